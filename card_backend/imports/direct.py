"""The fast path of the import on PostgreSQL: COPY straight into families, persons and family_events.

Most files are clean. For them, staging every row and then ``INSERT … SELECT``-ing it again costs a second
pass over millions of rows after parsing ends; COPY into the registry tables instead runs the server's
work (indexes, foreign keys) on the other core *while* Python parses. Ids come from the file's ordinals
above the current maximum, reserved by locking ``families`` and ``persons`` against other writers for the
duration of the import (readers are not blocked). The caller runs this in a SAVEPOINT: a unique violation
(a national ID or book number repeated or already registered) or any row error rolls it back and the
staged path (``staging.py``) re-reads the file to name every offending line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from card_backend.imports.csvformat import FamilyTuple, PersonTuple
from card_backend.imports.staging import copy_csv

_FAMILIES = "id, book_number, governorate, address, head_person_id, status, phone"
_PERSONS = (
    "id, national_id, family_id, first_name_ar, last_name_ar, first_name_en, last_name_en, birth_date, sex, "
    "relation, alive"
)
_EVENTS = "family_id, kind, actor, at, old, new"


class DirectLoad:
    def __init__(self, conn: Connection, actor: str, source: str) -> None:
        self.conn = conn
        self.actor = actor[:64]
        self.source = json.dumps(source[:100], ensure_ascii=False)
        self.at = datetime.now(UTC).isoformat()
        self.families = 0
        self.persons = 0
        conn.execute(text("LOCK TABLE families, persons IN SHARE ROW EXCLUSIVE MODE"))
        self.f_base = self._base("families")
        self.p_base = self._base("persons")

    def _base(self, table: str) -> int:
        top = int(self.conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar_one())
        seq = self.conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar_one()
        return max(top, int(self.conn.execute(text(f"SELECT last_value FROM {seq}")).scalar_one()))

    def load(self, families: Sequence[FamilyTuple], persons: Sequence[PersonTuple]) -> None:
        fb, pb = self.f_base, self.p_base
        copy_csv(
            self.conn,
            "families",
            _FAMILIES,
            ((fb + f[0], f[2], f[3], f[4], pb + f[6], "active", f[5] or None) for f in families),
            ("address",),
        )
        copy_csv(
            self.conn,
            "persons",
            _PERSONS,
            ((pb + p[0], p[3], fb + p[1], p[4], p[5], p[6], p[7], p[8], p[9], p[10], "t") for p in persons),
            ("first_name_en", "last_name_en"),
        )
        prefix = '{"source": "import", "file": ' + self.source + ', "line": '
        copy_csv(
            self.conn,
            "family_events",
            _EVENTS,
            ((fb + f[0], "create", self.actor, self.at, None, f"{prefix}{f[1]}}}") for f in families),
        )
        self.families += len(families)
        self.persons += len(persons)

    def finish(self) -> tuple[int, int]:
        for table in ("families", "persons"):
            self.conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
                )
            )
        return self.families, self.persons
