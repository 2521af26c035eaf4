"""All SQL of the families import: staging tables, bulk load, set-based checks and the final insert.

PostgreSQL: text COPY into temporary tables (dropped at commit), checks as joins/aggregates, then
``INSERT … SELECT`` with ids assigned from the file's ordinals under a table lock, so no join is needed to
link persons to their new family, nor an UPDATE to set each family's head. SQLite: the same tables and
SQL, loaded by ``executemany`` in chunks. Everything runs in the caller's transaction: one commit or none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from card_backend.imports.csvformat import FamilyTuple, PersonTuple, RowError

_FAMILY_COLS = "f_ord, line, book_number, governorate, address, phone, head_p_ord"
_PERSON_COLS = (
    "p_ord, f_ord, line, national_id, first_name_ar, last_name_ar, first_name_en, last_name_en, birth_date, "
    "sex, relation"
)

# Each check adds the offending rows to stg_bad (f_ord, line, field, reason); later occurrences of a
# repeated value are the offenders, the first one stands.
_CHECKS: tuple[tuple[str, str], ...] = (
    (
        "national_id repeated in the file",
        """INSERT INTO stg_bad (f_ord, line, field, reason)
           SELECT s.f_ord, s.line, 'national_id', 'duplicate_national_id: also on line ' || d.first_line
           FROM stg_persons s JOIN (SELECT national_id, MIN(line) AS first_line FROM stg_persons
                                    GROUP BY national_id HAVING COUNT(*) > 1) d
             ON d.national_id = s.national_id AND s.line > d.first_line""",
    ),
    (
        "national_id already registered",
        """INSERT INTO stg_bad (f_ord, line, field, reason)
           SELECT s.f_ord, s.line, 'national_id', 'duplicate_national_id: already registered'
           FROM stg_persons s JOIN persons p ON p.national_id = s.national_id""",
    ),
    (
        "book_number repeated in the file",
        """INSERT INTO stg_bad (f_ord, line, field, reason)
           SELECT s.f_ord, s.line, 'book_number',
              'duplicate_family_book: also on line ' || d.first_line || ' (keep a family''s rows together)'
           FROM stg_families s JOIN (SELECT book_number, MIN(line) AS first_line FROM stg_families
                                     GROUP BY book_number HAVING COUNT(*) > 1) d
             ON d.book_number = s.book_number AND s.line > d.first_line""",
    ),
    (
        "book_number already registered",
        """INSERT INTO stg_bad (f_ord, line, field, reason)
           SELECT s.f_ord, s.line, 'book_number', 'duplicate_family_book: already registered'
           FROM stg_families s JOIN families f ON f.book_number = s.book_number""",
    ),
)


class Staging:
    def __init__(self, connection: Connection) -> None:
        self.conn = connection
        self.pg = connection.dialect.name == "postgresql"

    def _x(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        return self.conn.execute(text(sql), params or {})

    def create(self) -> None:
        self.drop()
        tail = " ON COMMIT DROP" if self.pg else ""
        if self.pg:  # the checks aggregate millions of rows: let them hash in memory, for this transaction
            self._x("SET LOCAL work_mem = '256MB'")
        self._x(
            "CREATE TEMPORARY TABLE stg_families (f_ord INTEGER, line INTEGER, book_number VARCHAR(32), "
            f"governorate VARCHAR(32), address VARCHAR(200), phone VARCHAR(20), head_p_ord INTEGER){tail}"
        )
        self._x(
            "CREATE TEMPORARY TABLE stg_persons (p_ord INTEGER, f_ord INTEGER, line INTEGER, "
            "national_id VARCHAR(11), first_name_ar VARCHAR(60), last_name_ar VARCHAR(60), "
            "first_name_en VARCHAR(60), last_name_en VARCHAR(60), birth_date DATE, sex VARCHAR(1), "
            f"relation VARCHAR(16)){tail}"
        )
        self._x(
            "CREATE TEMPORARY TABLE stg_bad (f_ord INTEGER, line INTEGER, field VARCHAR(32), "
            f"reason VARCHAR(200)){tail}"
        )

    def drop(self) -> None:
        for table in ("stg_families", "stg_persons", "stg_bad"):
            self._x(f"DROP TABLE IF EXISTS {table}")

    def load(self, families: Sequence[FamilyTuple], persons: Sequence[PersonTuple]) -> None:
        if self.pg:
            self._copy("stg_families", _FAMILY_COLS, families)
            self._copy("stg_persons", _PERSON_COLS, persons)
            return
        self.conn.exec_driver_sql(
            f"INSERT INTO stg_families ({_FAMILY_COLS}) VALUES (?,?,?,?,?,?,?)", families
        )
        self.conn.exec_driver_sql(
            f"INSERT INTO stg_persons ({_PERSON_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", persons
        )

    def _copy(self, table: str, columns: str, rows: Sequence[tuple[Any, ...]]) -> None:
        copy_csv(self.conn, table, columns, rows, ("address", "phone", "first_name_en", "last_name_en"))

    def check(self) -> int:
        """Run the set-based checks; the number of offending rows."""
        if self.pg:
            self._x("ANALYZE stg_families")
            self._x("ANALYZE stg_persons")
        for _name, sql in _CHECKS:
            self._x(sql)
        return int(self._x("SELECT COUNT(*) FROM stg_bad").scalar_one())

    def bad_rows(self, limit: int) -> list[RowError]:
        rows = self._x("SELECT line, field, reason FROM stg_bad ORDER BY line LIMIT :n", {"n": limit}).all()
        return [RowError(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    def bad_families(self) -> int:
        return int(self._x("SELECT COUNT(DISTINCT f_ord) FROM stg_bad").scalar_one())

    def insert(self, actor: str, source: str) -> tuple[int, int]:
        """Move the staged, unflagged families and persons into the registry; (families, persons) added."""
        if self.pg:
            # Ids come from the file's ordinals: nobody else may take ids until we commit.
            self._x("LOCK TABLE families, persons IN SHARE ROW EXCLUSIVE MODE")
        f_base = int(self._x("SELECT COALESCE(MAX(id), 0) FROM families").scalar_one())
        p_base = int(self._x("SELECT COALESCE(MAX(id), 0) FROM persons").scalar_one())
        if self.pg:
            f_base = max(f_base, self._sequence_value("families"))
            p_base = max(p_base, self._sequence_value("persons"))
        keep = "WHERE NOT EXISTS (SELECT 1 FROM stg_bad b WHERE b.f_ord = s.f_ord)"
        params = {"fb": f_base, "pb": p_base, "actor": actor[:64], "source": source[:100]}
        families = self._x(
            "INSERT INTO families (id, book_number, governorate, address, head_person_id, status, phone) "
            "SELECT :fb + s.f_ord, s.book_number, s.governorate, s.address, :pb + s.head_p_ord, 'active', "
            f"NULLIF(s.phone, '') FROM stg_families s {keep}",
            params,
        ).rowcount
        persons = self._x(
            "INSERT INTO persons (id, national_id, family_id, first_name_ar, last_name_ar, first_name_en, "
            "last_name_en, birth_date, sex, relation, alive) "
            "SELECT :pb + s.p_ord, s.national_id, :fb + s.f_ord, s.first_name_ar, s.last_name_ar, "
            "s.first_name_en, s.last_name_en, s.birth_date, s.sex, s.relation, TRUE "
            f"FROM stg_persons s {keep}",
            params,
        ).rowcount
        new_json = (
            "json_build_object('source', 'import', 'file', CAST(:source AS TEXT), 'line', s.line)"
            if self.pg
            else "json_object('source', 'import', 'file', :source, 'line', s.line)"
        )
        self._x(
            "INSERT INTO family_events (family_id, kind, actor, at, old, new) "
            f"SELECT :fb + s.f_ord, 'create', :actor, CURRENT_TIMESTAMP, NULL, {new_json} "
            f"FROM stg_families s {keep}",
            params,
        )
        if self.pg:
            for table in ("families", "persons"):
                self._x(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
                )
        return int(families), int(persons)

    def _sequence_value(self, table: str) -> int:
        seq = self._x("SELECT pg_get_serial_sequence(:t, 'id')", {"t": table}).scalar_one()
        return int(self._x(f"SELECT last_value FROM {seq}").scalar_one())


def copy_csv(
    conn: Connection, table: str, columns: str, rows: Iterable[Sequence[Any]], not_null: Sequence[str] = ()
) -> None:
    """COPY rows in CSV form, written by the C ``csv`` writer (quoting handled there). An unquoted empty
    field is NULL (``None`` is written so), except in the ``not_null`` columns where it is ``''``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    names = {c.strip() for c in columns.split(",")}
    forced = [c for c in not_null if c in names]
    options = "FORMAT csv" + (f", FORCE_NOT_NULL ({', '.join(forced)})" if forced else "")
    raw: Any = conn.connection.dbapi_connection  # psycopg.Connection: COPY is not in DB-API
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN WITH ({options})") as copy:
        copy.write(buf.getvalue())
