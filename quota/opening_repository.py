"""Bulk writes and reads of allowances for period opening (all of opening's SQL is here).

PostgreSQL gets the rows by ``COPY … FROM STDIN (FORMAT BINARY)``: every column of a rule's rows has
a fixed width (the holder type and product code are constant within a rule), so one numpy
structured array *is* the wire format, built without a Python loop. Topping up a period already
opened (new families) goes through a temporary table and an anti-join, so nobody gets two rows.
SQLite, the single-point default, takes SQLAlchemy Core ``executemany``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import numpy as np
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quota import grant_repository as grants
from quota.dialect import is_pg
from quota.domain.eligibility import BoolArray, IntArray
from quota.ledger_repository import utc
from quota.models import Allowance
from quota.population import int_columns

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The record of openings (migration 0002); a Core table so that quota.models stays the lead's.
period_openings = Table(
    "period_openings",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("holder_type", String(16), nullable=False),
    Column("product_code", String(32), nullable=False),
    Column("rule_code", String(64), nullable=False),
    Column("rule_version_id", Integer, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True)),
    Column("rows", Integer, nullable=False),
    Column("carried_qty", BigInteger, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(64), nullable=False),
    Column("run_id", Integer),
    Column("slot", Integer),
    Column("grants_pruned_at", DateTime(timezone=True)),
)
_TABLE = cast(Table, Allowance.__table__)
_A = _TABLE.c
COLUMNS = (
    "holder_type, holder_id, product_code, rule_version_id, period_start, period_end, "
    "base_qty, granted_qty, carried_qty"
)


@dataclass(frozen=True)
class Rows:
    """Allowance rows of one rule (or of the points product) for one period.

    With ``allotted`` the arrays are the whole population's (0 where a holder gets nothing) and rows
    exist where it is true: grants store them as they are, without the copies a mask would make;
    ``compact()`` gives the rows alone, for every other writer.
    """

    holder_type: str
    product_code: str
    rule_version_id: int
    period_start: datetime
    period_end: datetime | None
    holder_ids: IntArray
    base_qty: IntArray
    granted_qty: IntArray
    carried_qty: IntArray
    allotted: BoolArray | None = None

    @property
    def n(self) -> int:
        if self.allotted is not None:
            return int(np.count_nonzero(self.allotted))
        return int(self.holder_ids.shape[0])

    def subset(self, keep: BoolArray) -> Rows:
        return Rows(
            self.holder_type,
            self.product_code,
            self.rule_version_id,
            self.period_start,
            self.period_end,
            self.holder_ids[keep],
            self.base_qty[keep],
            self.granted_qty[keep],
            self.carried_qty[keep],
        )

    def compact(self) -> Rows:
        return self if self.allotted is None else self.subset(self.allotted)


def _micros(at: datetime) -> int:
    return (at - _PG_EPOCH) // np.timedelta64(1, "us").item()


def binary_rows(rows: Rows) -> bytes:
    """The rows in PostgreSQL's binary COPY format (without the file header and trailer)."""
    ht, pc = rows.holder_type.encode(), rows.product_code.encode()
    fields: list[tuple[str, str]] = [
        ("n", ">i2"),
        ("l0", ">i4"),
        ("ht", f"S{len(ht)}"),
        ("l1", ">i4"),
        ("hid", ">i8"),
        ("l2", ">i4"),
        ("pc", f"S{len(pc)}"),
        ("l3", ">i4"),
        ("rv", ">i4"),
        ("l4", ">i4"),
        ("ps", ">i8"),
        ("l5", ">i4"),
    ]
    if rows.period_end is not None:
        fields.append(("pe", ">i8"))
    fields += [("l6", ">i4"), ("base", ">i8"), ("l7", ">i4"), ("gr", ">i8"), ("l8", ">i4"), ("car", ">i8")]
    buf = np.empty(rows.n, dtype=np.dtype(fields))
    buf["n"] = 9
    buf["l0"], buf["ht"], buf["l1"], buf["hid"] = len(ht), ht, 8, rows.holder_ids
    buf["l2"], buf["pc"], buf["l3"], buf["rv"] = len(pc), pc, 4, rows.rule_version_id
    buf["l4"], buf["ps"] = 8, _micros(rows.period_start)
    if rows.period_end is not None:
        buf["l5"], buf["pe"] = 8, _micros(rows.period_end)
    else:
        buf["l5"] = -1
    buf["l6"], buf["base"], buf["l7"], buf["gr"] = 8, rows.base_qty, 8, rows.granted_qty
    buf["l8"], buf["car"] = 8, rows.carried_qty
    return buf.tobytes()


def _copy(conn: Connection, table: str, batches: list[Rows]) -> None:
    grants.copy_in(
        conn,
        f"COPY {table} ({COLUMNS}) FROM STDIN (FORMAT BINARY)",
        (binary_rows(rows.compact()) for rows in batches if rows.n),
    )


def _dicts(rows: Rows) -> list[dict[str, Any]]:
    rows = rows.compact()
    start = rows.period_start.astimezone(UTC)
    end = rows.period_end.astimezone(UTC) if rows.period_end else None
    return [
        {
            "holder_type": rows.holder_type,
            "holder_id": h,
            "product_code": rows.product_code,
            "rule_version_id": rows.rule_version_id,
            "period_start": start,
            "period_end": end,
            "base_qty": b,
            "granted_qty": g,
            "carried_qty": c,
        }
        for h, b, g, c in zip(
            rows.holder_ids.tolist(),
            rows.base_qty.tolist(),
            rows.granted_qty.tolist(),
            rows.carried_qty.tolist(),
            strict=True,
        )
    ]


_HOME_OF_ROW = grants.home_before(
    "allowances.holder_type", "allowances.holder_id", "allowances.product_code", "allowances.period_start"
)


def _inherit_homes(conn: Connection, rows: Rows) -> None:
    """Rows written directly (not as grants) start at the station the holder was last tied to, as a
    grant does when the ledger materialises it (``grants.MATERIALISE``). Only holders with such a
    station are written."""
    if not rows.n:
        return
    conn.execute(
        update(_TABLE)
        .where(_A.holder_type == rows.holder_type, _A.product_code == rows.product_code,
               _A.period_start == rows.period_start.astimezone(UTC), _A.home_point_code.is_(None),
               text(f"{_HOME_OF_ROW} IS NOT NULL"))
        .values(home_point_code=text(_HOME_OF_ROW))
    )


def insert_new(conn: Connection, batches: list[Rows], at: datetime) -> dict[int, tuple[int, int]]:
    """Rows of periods nobody has opened yet: straight bulk load.

    On PostgreSQL each holder type's rules become one run of grants (``grant_repository``) where
    they fit; returns, by index in ``batches``, the (run id, slot) that holds them.
    """
    stored: dict[int, tuple[int, int]] = {}
    if not is_pg(conn):
        for rows in batches:
            if rows.n:
                conn.execute(insert(_TABLE), _dicts(rows))
                _inherit_homes(conn, rows)
        return stored
    direct: list[Rows] = []
    for holder_type in sorted({r.holder_type for r in batches}):
        index = [i for i, r in enumerate(batches) if r.holder_type == holder_type and r.n]
        members = [batches[i] for i in index]
        plan = grants.layout(members)
        if plan is None:
            direct += members
            continue
        run_id = grants.write_run(conn, holder_type, plan, members, at)
        stored.update({i: (run_id, slot) for slot, i in enumerate(index)})
    if direct:
        _copy(conn, "allowances", direct)
        for rows in direct:
            _inherit_homes(conn, rows)
    return stored


def _ints(
    conn: Connection, stmt: Select[Any], pg_sql: str, params: dict[str, Any], ncols: int
) -> list[IntArray]:
    """PostgreSQL: streamed by binary COPY; SQLite: the Core statement (its datetime format)."""
    if is_pg(conn):
        return int_columns(conn, pg_sql, params, ncols)
    table = np.asarray(conn.execute(stmt).all(), dtype=np.int64).reshape(-1, ncols)
    return [table[:, i].copy() for i in range(ncols)]


def existing_holders(conn: Connection, rows: Rows, cache: grants.RunCache | None = None) -> IntArray:
    """Holders that already have a row or a grant of this product in this period, unsorted and
    possibly repeated."""
    sql = (
        "SELECT holder_id FROM allowances WHERE holder_type = %(t)s AND product_code = %(p)s "
        "AND period_start = %(s)s"
    )
    params: dict[str, Any] = {"t": rows.holder_type, "p": rows.product_code, "s": rows.period_start}
    stmt = select(_A.holder_id).where(
        _A.holder_type == rows.holder_type,
        _A.product_code == rows.product_code,
        _A.period_start == rows.period_start.astimezone(UTC),
    )
    (ids,) = _ints(conn, stmt, sql, params, 1)
    granted, _, _, _ = grants.period_columns(
        conn, rows.holder_type, rows.product_code, rows.period_start, cache
    )
    return np.concatenate((ids, granted))  # may repeat a holder: callers only ask who is in it


def _temp(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS opening_rows (LIKE allowances INCLUDING DEFAULTS) ON COMMIT DROP"
        )
    )
    conn.execute(text("TRUNCATE opening_rows"))


def insert_missing(conn: Connection, rows: Rows) -> int:
    """Rows for holders without one in this period yet (a period topped up with new holders);
    returns rows written."""
    rows = rows.compact()
    if not is_pg(conn):
        subset = rows.subset(~np.isin(rows.holder_ids, existing_holders(conn, rows)))
        if subset.n:
            conn.execute(insert(_TABLE), _dicts(subset))
            _inherit_homes(conn, subset)
        return subset.n
    _temp(conn)
    _copy(conn, "opening_rows", [rows])
    result = conn.execute(
        text(
            f"INSERT INTO allowances ({COLUMNS}) SELECT {COLUMNS} FROM opening_rows o WHERE NOT EXISTS ("
            "SELECT 1 FROM allowances a WHERE a.holder_type = o.holder_type AND a.holder_id = o.holder_id "
            "AND a.product_code = o.product_code AND a.period_start = o.period_start)"
        )
    )
    _inherit_homes(conn, rows)
    return int(result.rowcount)


# Rolling refresh ---------------------------------------------------------------------------------
_ROLLING_ROWS = (
    "SELECT id, holder_id, rule_version_id, round(extract(epoch FROM period_start) * 1000000), "
    "COALESCE(round(extract(epoch FROM period_end) * 1000000), -1), base_qty, granted_qty, carried_qty, "
    "topup_qty, used_qty, held_qty FROM allowances WHERE holder_type = %(t)s AND product_code = %(p)s"
)
# A row the ledger has not touched: no window started, nothing used, held or topped up.
_UNTOUCHED = "period_end IS NULL AND used_qty = 0 AND held_qty = 0 AND topup_qty = 0 AND carried_qty = 0"
# A row a refresh may set in place: no window open and nothing drawn or held; a one-off top-up or carry on
# it is kept and added to the new grant.
_SETTABLE = "period_end IS NULL AND used_qty = 0 AND held_qty = 0"


def product_rows(conn: Connection, holder_type: str, product_code: str) -> grants.Entries:
    """Every ``allowances`` row of a product (all periods), as columns."""
    if is_pg(conn):
        return grants.Entries(
            *int_columns(conn, _ROLLING_ROWS, {"t": holder_type, "p": product_code}, 11, wide=True)
        )
    stmt = select(
        _A.id, _A.holder_id, _A.rule_version_id, _A.period_start, _A.period_end, _A.base_qty,
        _A.granted_qty, _A.carried_qty, _A.topup_qty, _A.used_qty, _A.held_qty,
    ).where(_A.holder_type == holder_type, _A.product_code == product_code)  # fmt: skip
    table = [
        (i, h, v, grants.epoch_us(s), grants.epoch_us(e) if e is not None else -1, *rest)
        for i, h, v, s, e, *rest in conn.execute(stmt).all()
    ]
    columns = np.asarray(table, dtype=np.int64).reshape(len(table), 11)
    return grants.Entries(*(columns[:, i].copy() for i in range(11)))


@dataclass(frozen=True)
class RollingWrites:
    """What a rolling refresh changes, per holder: rows to insert (not started, nothing carried), rows
    not started yet to set to another version and amount, and pending rows to drop."""

    holder_type: str
    product_code: str
    new_holder_ids: IntArray
    new_versions: IntArray
    new_start_us: IntArray  # microseconds since the Unix epoch
    new_base_qty: IntArray
    new_granted_qty: IntArray
    set_ids: IntArray
    set_versions: IntArray
    set_base_qty: IntArray
    set_granted_qty: IntArray
    drop_ids: IntArray

    @property
    def n(self) -> int:
        return len(self.new_holder_ids) + len(self.set_ids) + len(self.drop_ids)


_PG_FROM_UNIX_US = (_PG_EPOCH - datetime(1970, 1, 1, tzinfo=UTC)) // np.timedelta64(1, "us").item()


def _renewal_wire(w: RollingWrites) -> bytes:
    """The new rows in binary COPY format: as ``binary_rows``, a version and a start per row."""
    ht, pc = w.holder_type.encode(), w.product_code.encode()
    buf = np.empty(len(w.new_holder_ids), dtype=np.dtype([
        ("n", ">i2"), ("l0", ">i4"), ("ht", f"S{len(ht)}"), ("l1", ">i4"), ("hid", ">i8"),
        ("l2", ">i4"), ("pc", f"S{len(pc)}"), ("l3", ">i4"), ("rv", ">i4"), ("l4", ">i4"), ("ps", ">i8"),
        ("l5", ">i4"), ("l6", ">i4"), ("base", ">i8"), ("l7", ">i4"), ("gr", ">i8"), ("l8", ">i4"),
        ("car", ">i8"),
    ]))  # fmt: skip
    buf["n"] = 9
    buf["l0"], buf["ht"], buf["l1"], buf["hid"] = len(ht), ht, 8, w.new_holder_ids
    buf["l2"], buf["pc"], buf["l3"], buf["rv"] = len(pc), pc, 4, w.new_versions
    buf["l4"], buf["ps"], buf["l5"] = 8, w.new_start_us - _PG_FROM_UNIX_US, -1
    buf["l6"], buf["base"], buf["l7"], buf["gr"] = 8, w.new_base_qty, 8, w.new_granted_qty
    buf["l8"], buf["car"] = 8, 0
    return buf.tobytes()


# A renewal keeps the station the card is tied to (RULES.md: "tied to its last station; n changes per
# period"): the home point of the holder's latest earlier row, which the new window's changes move.
_HOME_OF_O = grants.home_before("o.holder_type", "o.holder_id", "o.product_code", "o.period_start")
_O_COLUMNS = ", ".join(f"o.{c.strip()}" for c in COLUMNS.split(","))


def write_rolling(conn: Connection, w: RollingWrites) -> None:
    """Apply a rolling refresh in bulk. A renewal row keeps the holder's station (``_HOME_OF_O``). A
    row is set only while no window is open on it and nothing is drawn or held (its top-up or carry
    stays), and dropped only while untouched: one a redemption started meanwhile keeps its window (the
    next refresh looks again); an insert that meets a row of the same start (a grant materialised
    meanwhile) is skipped the same way."""
    if is_pg(conn):
        if len(w.new_holder_ids):
            _temp(conn)
            grants.copy_in(
                conn, f"COPY opening_rows ({COLUMNS}) FROM STDIN (FORMAT BINARY)", [_renewal_wire(w)]
            )
            conn.execute(
                text(
                    f"INSERT INTO allowances ({COLUMNS}, home_point_code) SELECT {_O_COLUMNS}, "
                    f"{_HOME_OF_O} FROM opening_rows o "
                    "ON CONFLICT (holder_type, holder_id, product_code, period_start) DO NOTHING"
                )
            )
        if len(w.set_ids):
            conn.execute(
                text(
                    "UPDATE allowances a SET rule_version_id = s.v, base_qty = s.b, "
                    "granted_qty = s.g + a.topup_qty + a.carried_qty "
                    "FROM unnest(CAST(:ids AS bigint[]), CAST(:v AS int[]), CAST(:b AS bigint[]), "
                    f"CAST(:g AS bigint[])) AS s(id, v, b, g) WHERE a.id = s.id AND a.{_SETTABLE}"
                ),
                {"ids": w.set_ids.tolist(), "v": w.set_versions.tolist(), "b": w.set_base_qty.tolist(),
                 "g": w.set_granted_qty.tolist()},
            )
        if len(w.drop_ids):
            conn.execute(
                text(f"DELETE FROM allowances WHERE id = ANY(CAST(:ids AS bigint[])) AND {_UNTOUCHED}"),
                {"ids": w.drop_ids.tolist()},
            )
        return
    if len(w.new_holder_ids):
        stmt = sqlite_insert(_TABLE).on_conflict_do_nothing(
            index_elements=["holder_type", "holder_id", "product_code", "period_start"]
        )
        conn.execute(stmt, [
            {"holder_type": w.holder_type, "holder_id": h, "product_code": w.product_code,
             "rule_version_id": v, "period_start": _from_us(s), "period_end": None, "base_qty": b,
             "granted_qty": g, "carried_qty": 0}
            for h, v, s, b, g in zip(w.new_holder_ids.tolist(), w.new_versions.tolist(),
                                     w.new_start_us.tolist(), w.new_base_qty.tolist(),
                                     w.new_granted_qty.tolist(), strict=True)
        ])  # fmt: skip
        conn.execute(
            update(_TABLE)
            .where(_A.holder_type == w.holder_type, _A.product_code == w.product_code,
                   _A.holder_id.in_(w.new_holder_ids.tolist()), _A.home_point_code.is_(None),
                   _A.period_end.is_(None), _A.used_qty == 0)
            .values(home_point_code=text(_HOME_OF_ROW))
        )
    settable = (_A.period_end.is_(None), _A.used_qty == 0, _A.held_qty == 0)  # _SETTABLE
    untouched = (*settable, _A.topup_qty == 0, _A.carried_qty == 0)  # _UNTOUCHED
    if len(w.set_ids):
        conn.execute(
            update(_TABLE)
            .where(_A.id == bindparam("row_id"), *settable)
            .values(rule_version_id=bindparam("v"), base_qty=bindparam("b"),
                    granted_qty=bindparam("g") + _A.topup_qty + _A.carried_qty),
            [{"row_id": i, "v": v, "b": b, "g": g}
             for i, v, b, g in zip(w.set_ids.tolist(), w.set_versions.tolist(), w.set_base_qty.tolist(),
                                   w.set_granted_qty.tolist(), strict=True)],
        )  # fmt: skip
    if len(w.drop_ids):
        conn.execute(delete(_TABLE).where(_A.id.in_(w.drop_ids.tolist()), *untouched))


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def add_points(conn: Connection, rows: Rows) -> None:
    """Credit points: add to the holder's points allowance of the period, creating it if needed."""
    rows = rows.compact()
    if not rows.n:
        return
    if is_pg(conn):
        _temp(conn)
        _copy(conn, "opening_rows", [rows])
        conn.execute(
            text(
                f"INSERT INTO allowances ({COLUMNS}) SELECT {COLUMNS} FROM opening_rows "
                "ON CONFLICT (holder_type, holder_id, product_code, period_start) DO UPDATE SET "
                "granted_qty = allowances.granted_qty + excluded.granted_qty, "
                "carried_qty = allowances.carried_qty + excluded.carried_qty"
            )
        )
        return
    stmt = sqlite_insert(_TABLE)
    stmt = stmt.on_conflict_do_update(
        index_elements=["holder_type", "holder_id", "product_code", "period_start"],
        set_={
            "granted_qty": _A.granted_qty + stmt.excluded.granted_qty,
            "carried_qty": _A.carried_qty + stmt.excluded.carried_qty,
        },
    )
    conn.execute(stmt, _dicts(rows))


def previous_rows(
    conn: Connection,
    holder_type: str,
    product_code: str,
    period_start: datetime,
    cache: grants.RunCache | None = None,
) -> list[IntArray]:
    """holder_id, base, carried, topup, used, held of the product's allowances of a past period."""
    stmt = (
        select(_A.holder_id, _A.base_qty, _A.carried_qty, _A.topup_qty, _A.used_qty, _A.held_qty)
        .where(_A.holder_type == holder_type, _A.product_code == product_code)
        .where(_A.period_start == period_start.astimezone(UTC))
        .order_by(_A.holder_id)
    )
    touched = _ints(
        conn,
        stmt,
        "SELECT holder_id, base_qty, carried_qty, topup_qty, used_qty, held_qty FROM allowances "
        "WHERE holder_type = %(t)s AND product_code = %(p)s AND period_start = %(s)s ORDER BY holder_id",
        {"t": holder_type, "p": product_code, "s": period_start},
        6,
    )
    gid, gbase, _, gcarried = grants.period_columns(conn, holder_type, product_code, period_start, cache)
    untouched = ~np.isin(gid, touched[0])
    if not untouched.any():
        return touched
    zero = np.zeros(int(untouched.sum()), dtype=np.int64)
    merged = [
        np.concatenate((column, extra))
        for column, extra in zip(
            touched, (gid[untouched], gbase[untouched], gcarried[untouched], zero, zero, zero), strict=True
        )
    ]
    order = np.argsort(merged[0], kind="stable")
    return [column[order] for column in merged]


def openings(
    conn: Connection,
    holder_type: str,
    product_code: str,
    period_start: datetime | None,
    since: datetime | None = None,
    rolling: bool = False,
) -> int:
    """How many times this product's period (or, with ``None``, any period of it) was opened; with
    ``since``, only openings and rolling refreshes recorded at or after that slot start; with
    ``rolling``, only rolling openings and refreshes (recorded without an end: a calendar period of the
    product opened ahead is no refresh)."""
    po = period_openings.c
    stmt = select(func.count()).where(po.holder_type == holder_type, po.product_code == product_code)
    if rolling:
        stmt = stmt.where(po.period_end.is_(None))
    if period_start is not None:
        stmt = stmt.where(po.period_start == period_start.astimezone(UTC))
    if since is not None:
        stmt = stmt.where(po.period_start >= since.astimezone(UTC))
    return int(conn.execute(stmt).scalar_one())


class RollingOpening(NamedTuple):
    """The latest opening or refresh of a product opened with a rolling rule."""

    rule_code: str
    rule_version_id: int
    rows: int
    slot: datetime  # the local day it was recorded for (UTC)


def rolling_products(conn: Connection) -> dict[tuple[str, str], RollingOpening]:
    """Products ever opened with a rolling rule (their openings have no end): (holder type, product)
    → the latest such opening or refresh."""
    po = period_openings.c
    rows = conn.execute(
        select(po.holder_type, po.product_code, po.rule_code, po.rule_version_id, po.rows, po.period_start)
        .where(po.period_end.is_(None))
        .order_by(po.id)
    ).all()
    return {(t, p): RollingOpening(str(c), int(v), int(n), utc(at)) for t, p, c, v, n, at in rows}


def lock_openings(conn: Connection) -> None:
    """Serialise openings until the transaction ends (PostgreSQL; SQLite has one writer at a time):
    two openers of one period would otherwise both find it unopened and both store it."""
    if is_pg(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('period_openings'))"))


def record_opening(conn: Connection, **values: Any) -> None:
    # in UTC, as every stored time: SQLite keeps a datetime's wall clock and drops its offset, so a window
    # of the local calendar (Asia/Damascus) would be stored three hours off and never found again
    values = {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in values.items()}
    conn.execute(insert(period_openings), [values])


def grants_pruned_at(
    conn: Connection, holder_type: str, product_code: str, period_start: datetime
) -> datetime | None:
    """When the grants of this product's period were dropped (``grant_repository.prune``), if they were:
    its untouched holders are no longer known."""
    po = period_openings.c
    found = conn.execute(
        select(func.max(po.grants_pruned_at)).where(
            po.holder_type == holder_type, po.product_code == product_code,
            po.period_start == period_start.astimezone(UTC))
    ).scalar_one()
    return cast(datetime | None, found)


def period_rows(
    conn: Connection, holder_type: str, product_code: str, period_start: datetime
) -> list[IntArray]:
    """holder_id and used_qty of one product's period (for the unserved report)."""
    hid, _, _, _, used, _ = previous_rows(conn, holder_type, product_code, period_start)
    return [hid, used]
