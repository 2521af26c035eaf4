"""Allowances as opened, stored by blocks of holders until the ledger first touches them (PostgreSQL).

Opening a month for a million families computes six million allowances. Written as six million
``allowances`` rows they cost PostgreSQL about a microsecond each before any index is maintained —
far over the opening's two seconds — while the ledger will touch only those a family actually draws
on. So on PostgreSQL an opening stores what it computed the way it computed it, as columns
(migration 0006):

* a *run* per holder type: the rules opened together (one *slot* each) and a block size;
* one ``allowance_grants`` row per block of consecutive holder ids, whose packed 32-bit integers
  hold every slot of every holder of the block: ``granted_qty`` (0 = no allowance), and
  ``base_qty`` / ``carried_qty`` (NULL for the whole run when base = granted, nothing carried).

The rows travel by binary COPY from one numpy structured array (no Python loop); read back, a
run's packed columns are joined and viewed in place by ``np.frombuffer``.

The ledger *materialises* an allowance — inserts its ``allowances`` row from the grant — the first
time a redemption, hold, top-up or rebind touches that holder and product in a live period
(``MATERIALISE``, run before the rows are locked; ``ON CONFLICT DO NOTHING`` in key order, so
concurrent groups agree). Until then every reader sees the grant as an untouched allowance:
``holder_rows`` (quota, explain) and ``period_columns`` (carry-over, top-ups, the unserved report).

Grants are kept until ``prune`` drops a run: every period it opened has ended before the retention
cut-off and has a successor opening (so carry-over was computed from it). The openings keep their
record with ``grants_pruned_at`` set; their untouched holders are no longer known (the unserved
report refuses such a period).

Where grants do not fit — SQLite, a quantity over 2^31 - 1, holder ids too sparse for blocks — the
opening writes ``allowances`` rows directly, as it always did; both forms can coexist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Connection, text

from quota.dialect import is_pg
from quota.domain.eligibility import IntArray

if TYPE_CHECKING:
    from quota.opening_repository import Rows

# A block's granted_qty stays under PostgreSQL's 2 kB in-line threshold.
_BLOCK_BYTES = 1792
_INT4_MAX = 2**31 - 1
_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_TRAILER = b"\xff\xff"
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def home_before(holder_type: str, holder_id: str, product_code: str, period_start: str) -> str:
    """SQL for the station a holder was last tied to for a product, on a row before ``period_start``
    (RULES.md: a card is tied to its last station). A new period's row, or a rolling renewal, starts
    from it, so a new week or month does not let a card bind anew; the period's changes start at 0."""
    return (
        "(SELECT p.home_point_code FROM allowances p "
        f"WHERE p.holder_type = {holder_type} AND p.holder_id = {holder_id} "
        f"AND p.product_code = {product_code} AND p.period_start < {period_start} "
        "AND p.home_point_code IS NOT NULL ORDER BY p.period_start DESC LIMIT 1)"
    )


def row_of_period(holder_type: str, holder_id: str, product_code: str) -> str:
    """SQL: the holder has an ``allowances`` row of the product inside the period of the grant's
    opening (joined as ``o``): the row made from the grant, which stands for it from then on.

    A calendar grant is hidden only by a row starting inside its own period: a later period's row (a
    month opened ahead and written as rows, because its holders did not fit a run of grants) must not
    hide it, or the holder is refused ``not_eligible`` until that period begins. A rolling grant has no
    end and a rolling row's start moves with its windows, so any row of the product starting at or
    after the grant hides it (the row made from it, wherever its window now starts, or a renewal): it
    is made at most once."""
    return (
        f"EXISTS (SELECT 1 FROM allowances a WHERE a.holder_type = {holder_type} "
        f"AND a.holder_id = {holder_id} AND a.product_code = {product_code} "
        "AND a.period_start >= o.period_start AND (o.period_end IS NULL OR a.period_start < o.period_end))"
    )


# Insert the allowance rows of live grants not yet in ``allowances`` for the group's keys, in key
# order (so two groups materialising the same keys wait for each other instead of deadlocking).
# Run before the group locks its rows; ``%(keys)s`` is the lock statement's JSON document. The home
# point is looked up only for the rows inserted (a holder's first touch of the period). A grant is
# skipped once its period has a row (``row_of_period``); ON CONFLICT covers a concurrent insert.
MATERIALISE = (
    "INSERT INTO allowances (holder_type, holder_id, product_code, rule_version_id, period_start, "
    "period_end, base_qty, granted_qty, carried_qty, home_point_code) "
    "SELECT k.t, k.i, k.p, o.rule_version_id, o.period_start, o.period_end, "
    "COALESCE(grant_qty(g.base_qty, x.ix), x.q), x.q, COALESCE(grant_qty(g.carried_qty, x.ix), 0), "
    + home_before("k.t", "k.i", "k.p", "o.period_start") + " "
    "FROM json_to_recordset(%(keys)s::json) AS k(t text, i bigint, p text) "
    "JOIN period_openings o ON o.holder_type = k.t AND o.product_code = k.p AND o.run_id IS NOT NULL "
    "AND o.period_start <= %(now)s AND (o.period_end IS NULL OR o.period_end > %(now)s) "
    "JOIN grant_runs r ON r.id = o.run_id "
    "JOIN allowance_grants g ON g.run_id = o.run_id AND g.block = k.i / r.block_size "
    "CROSS JOIN LATERAL (SELECT e.ix, grant_qty(g.granted_qty, e.ix) AS q "
    "FROM (SELECT (mod(k.i, r.block_size) * r.slots + o.slot)::int AS ix) e) x "
    "WHERE x.q > 0 AND NOT " + row_of_period("k.t", "k.i", "k.p") + " "
    "ORDER BY k.t, k.i, k.p, o.period_start "
    "ON CONFLICT (holder_type, holder_id, product_code, period_start) DO NOTHING"
)

# A holder's grants that no row stands for yet (``row_of_period``, as MATERIALISE skips them), each
# with the station it would start at when materialised (``home_before``, as MATERIALISE sets it).
_HOLDER_GRANTS = (
    "SELECT o.product_code, o.rule_version_id, o.period_start, o.period_end, "
    "COALESCE(grant_qty(g.base_qty, x.ix), x.q), x.q, COALESCE(grant_qty(g.carried_qty, x.ix), 0), "
    + home_before(":t", ":hid", "o.product_code", "o.period_start") + " "
    "FROM period_openings o JOIN grant_runs r ON r.id = o.run_id "
    "JOIN allowance_grants g ON g.run_id = o.run_id AND g.block = :hid / r.block_size "
    "CROSS JOIN LATERAL (SELECT e.ix, grant_qty(g.granted_qty, e.ix) AS q "
    "FROM (SELECT (mod(:hid, r.block_size) * r.slots + o.slot)::int AS ix) e) x "
    "WHERE o.holder_type = :t AND x.q > 0 AND NOT " + row_of_period(":t", ":hid", "o.product_code") + " "
    "ORDER BY o.product_code, o.period_start"
)


def block_size(slots: int) -> int:
    """Holders per block: a power of two whose packed ``granted_qty`` stays in line (at least 8)."""
    size = 8
    while size * 2 * slots * 4 <= _BLOCK_BYTES:
        size *= 2
    return size


@dataclass(frozen=True)
class Layout:
    """Where one run's holders sit: the sorted blocks it writes and the size of each."""

    blocks: IntArray
    size: int
    slots: int
    with_base: bool
    with_carried: bool
    holders: int = 0

    def dtype(self) -> np.dtype[Any]:
        m = self.size * self.slots
        fields: list[tuple[Any, ...]] = [
            ("n", ">i2"), ("l0", ">i4"), ("run", ">i4"), ("l1", ">i4"), ("blk", ">i8"),
        ]  # fmt: skip
        for name, present in (("g", True), ("b", self.with_base), ("c", self.with_carried)):
            fields.append((f"{name}_len", ">i4"))
            if present:
                fields.append((f"{name}_els", ">i4", (m,)))
        return np.dtype(fields)


def layout(batches: Sequence[Rows]) -> Layout | None:
    """The layout of these rules' rows (one holder type), or None where grants do not fit."""
    filled = [r for r in batches if r.n]  # every batch keeps its slot, even an empty one
    if not filled:
        return None
    low = min(int(r.holder_ids.min()) for r in filled)
    high = max(int(r.holder_ids.max()) for r in filled)
    rows = sum(r.n for r in filled)
    if low < 0 or high - low > 8 * rows + 1024:  # ids too sparse: blocks would be mostly empty
        return None
    for r in filled:
        for values in (r.granted_qty, r.base_qty, r.carried_qty):
            if values.min() < 0 or values.max() > _INT4_MAX:
                return None
    size = block_size(len(batches))
    present = np.zeros(high - low + 1, dtype=bool)  # a scatter, not a sort: ids are dense
    for ids in {id(r.holder_ids): r.holder_ids for r in filled}.values():  # rules share a population
        present[ids - low] = True
    holders = int(np.count_nonzero(present))
    first = low // size
    used = np.zeros(high // size - first + 1, dtype=bool)
    used[(np.flatnonzero(present) + low) // size - first] = True
    blocks = np.flatnonzero(used).astype(np.int64) + first
    if len(blocks) * size > 4 * holders + size:
        return None
    with_base = any(bool(np.any(r.base_qty != r.granted_qty)) for r in batches)
    with_carried = any(bool(np.any(r.carried_qty)) for r in batches)
    return Layout(blocks, size, len(batches), with_base, with_carried, holders)


def _wire(run_id: int, plan: Layout, batches: Sequence[Rows]) -> bytes:
    """The run's ``allowance_grants`` rows in binary COPY format (without header and trailer).

    Each column is filled as a (holder position, slot) table and copied into the wire buffer in one
    go; a population whose ids run without gaps (the registry's) is a slice, not a scatter.
    """
    nb, size, k = len(plan.blocks), plan.size, plan.slots
    m = size * k
    buf = np.zeros(nb, dtype=plan.dtype())
    buf["n"], buf["l0"], buf["run"], buf["l1"], buf["blk"] = 5, 4, run_id, 8, plan.blocks
    b0 = int(plan.blocks[0])
    where = np.full(int(plan.blocks[-1]) - b0 + 1, -1, dtype=np.int64)
    where[plan.blocks - b0] = np.arange(nb)
    places: dict[int, slice | IntArray] = {}

    def place(ids: IntArray) -> slice | IntArray:
        """Row of each holder in the (block × holder in block) table: a slice when ids have no gaps."""
        if id(ids) not in places:
            lo, hi = int(ids[0]), int(ids[-1])
            gapless = hi - lo == len(ids) - 1 and bool(np.all(ids[1:] > ids[:-1]))
            first, last = int(where[lo // size - b0]), int(where[hi // size - b0])
            if gapless and last - first == hi // size - lo // size:  # its blocks are consecutive rows
                start = first * size + lo % size
                places[id(ids)] = slice(start, start + len(ids))
            else:
                places[id(ids)] = where[ids // size - b0] * size + ids % size
        return places[id(ids)]

    sources = {"g": "granted_qty", "b": "base_qty", "c": "carried_qty"}
    for name, present in (("g", True), ("b", plan.with_base), ("c", plan.with_carried)):
        if not present:
            buf[f"{name}_len"] = -1
            continue
        buf[f"{name}_len"] = 4 * m
        table = np.zeros((nb * size, k), dtype=">i4")
        for slot, rows in enumerate(batches):
            if len(rows.holder_ids):
                table[place(rows.holder_ids), slot] = getattr(rows, sources[name])
        buf[f"{name}_els"] = table.reshape(nb, m)
    return buf.tobytes()


def copy_in(conn: Connection, statement: str, payloads: Iterable[bytes]) -> None:
    """``COPY … FROM STDIN (FORMAT BINARY)`` on the caller's connection (inside its transaction):
    the file header, each payload of ready-made tuples, the trailer."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(statement) as cp:
        cp.write(_HEADER)
        for payload in payloads:
            cp.write(payload)
        cp.write(_TRAILER)


def write_run(conn: Connection, holder_type: str, plan: Layout, batches: Sequence[Rows], at: datetime) -> int:
    """Store one holder type's rules as a run of grants; returns the run id (slot = index in ``batches``)."""
    run_id = int(
        conn.execute(
            text(
                "INSERT INTO grant_runs (holder_type, slots, block_size, holders, opened_at) "
                "VALUES (:t, :k, :b, :h, :at) RETURNING id"
            ),
            {"t": holder_type, "k": plan.slots, "b": plan.size, "h": plan.holders, "at": at},
        ).scalar_one()
    )
    copy_in(
        conn,
        "COPY allowance_grants (run_id, block, granted_qty, base_qty, carried_qty) "
        "FROM STDIN (FORMAT BINARY)",
        [_wire(run_id, plan, batches)],
    )
    return run_id


@dataclass(frozen=True)
class _Opening:
    run_id: int
    slot: int
    slots: int
    size: int
    rule_version_id: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None


def _openings(
    conn: Connection, holder_type: str, product_code: str, period_start: datetime | None
) -> list[_Opening]:
    where = " AND o.period_start = :s" if period_start is not None else ""
    rows = conn.execute(
        text(
            "SELECT o.run_id, o.slot, r.slots, r.block_size, o.rule_version_id, o.period_start, o.period_end "
            "FROM period_openings o JOIN grant_runs r ON r.id = o.run_id "
            f"WHERE o.holder_type = :t AND o.product_code = :p{where} ORDER BY o.run_id, o.slot"
        ),
        {"t": holder_type, "p": product_code, "s": period_start},
    ).all()
    return [_Opening(int(a), int(b), int(c), int(d), int(v), s, e) for a, b, c, d, v, s, e in rows]


@dataclass(frozen=True)
class _Run:
    """A run's blocks as read back: block numbers and each column as (block, holder in block, slot)."""

    blocks: IntArray
    granted: np.ndarray[Any, Any]
    base: np.ndarray[Any, Any] | None
    carried: np.ndarray[Any, Any] | None


_READ_RUN = (
    "SELECT block, granted_qty, base_qty, carried_qty FROM allowance_grants WHERE run_id = %(run)s "
    "ORDER BY block"
)


def _read_run(conn: Connection, o: _Opening) -> _Run:
    """All blocks of a run (binary results: ~16 k rows for 1 M families), each column joined and read
    in place by numpy. One ``string_agg`` per column sorted the blocks once per column (2 × slower)."""
    raw: Any = conn.connection.driver_connection
    with raw.cursor(binary=True) as cur:
        rows = cur.execute(_READ_RUN, {"run": o.run_id}).fetchall()
    shape = (-1, o.size, o.slots)

    def cube(column: int) -> np.ndarray[Any, Any] | None:
        if not rows or rows[0][column] is None:  # NULL for the whole run (see Layout)
            return None
        return np.frombuffer(b"".join(r[column] for r in rows), dtype=">i4").reshape(shape)

    blocks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    granted = cube(1)
    if granted is None:
        return _Run(blocks, np.zeros((0, o.size, o.slots), ">i4"), None, None)
    return _Run(blocks, granted, cube(2), cube(3))


RunCache = dict[int, "_Run"]
"""Runs already read in one unit of work (an opening reads a run once per product it carries over
or tops up; the run holds every product)."""


def period_columns(
    conn: Connection,
    holder_type: str,
    product_code: str,
    period_start: datetime | None,
    cache: RunCache | None = None,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """Grants of a product's period (of any period with ``None``): holder_id, base, granted and
    carried per holder, by run then holder id. Empty on SQLite (it has no grants)."""
    empty = np.zeros(0, dtype=np.int64)
    if not is_pg(conn):
        return empty, empty, empty, empty
    parts = [_slot_columns(conn, o, cache) for o in _openings(conn, holder_type, product_code, period_start)]
    if not parts:
        return empty, empty, empty, empty
    ids, base, granted, carried = (np.concatenate(c) for c in zip(*parts, strict=True))
    return ids, base, granted, carried


def _slot_columns(
    conn: Connection, o: _Opening, cache: RunCache | None
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """One opening's grants: holder_id, base, granted and carried of the holders it gave something."""
    run = cache.get(o.run_id) if cache is not None else None
    if run is None:
        run = _read_run(conn, o)
        if cache is not None:
            cache[o.run_id] = run
    granted = np.asarray(run.granted[:, :, o.slot], dtype=np.int64)
    blk, off = np.nonzero(granted > 0)
    ids = run.blocks[blk] * o.size + off
    given = granted[blk, off]
    base = np.asarray(run.base[blk, off, o.slot], dtype=np.int64) if run.base is not None else given
    carried = (
        np.asarray(run.carried[blk, off, o.slot], dtype=np.int64)
        if run.carried is not None
        else np.zeros(len(ids), dtype=np.int64)
    )
    return ids, base, given, carried


@dataclass(frozen=True)
class Entries:
    """Allowances of one product as columns, one element per allowance (a row or an untouched grant).

    Times are microseconds since the Unix epoch, ``-1`` for a NULL ``period_end``; ``ids`` is the
    ``allowances`` id, 0 for a grant.
    """

    ids: IntArray
    holder_ids: IntArray
    rule_version_ids: IntArray
    start_us: IntArray
    end_us: IntArray
    base_qty: IntArray
    granted_qty: IntArray
    carried_qty: IntArray
    topup_qty: IntArray
    used_qty: IntArray
    held_qty: IntArray

    @staticmethod
    def concat(parts: Sequence[Entries]) -> Entries:
        names = Entries.__dataclass_fields__
        if not parts:
            return Entries(*(np.zeros(0, dtype=np.int64) for _ in names))
        return Entries(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def take(self, index: IntArray | np.ndarray[Any, Any]) -> Entries:
        return Entries(*(getattr(self, n)[index] for n in Entries.__dataclass_fields__))


def epoch_us(at: datetime) -> int:
    """Microseconds since the Unix epoch (a naive datetime, as SQLite returns them, is UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _UNIX_EPOCH) // timedelta(microseconds=1)


def product_grants(
    conn: Connection, holder_type: str, product_code: str, cache: RunCache | None = None
) -> Entries:
    """Every stored grant of a product, of every opening (rolling refresh): as untouched allowances,
    with each opening's rule version and window. Empty on SQLite (it has no grants)."""
    parts: list[Entries] = []
    if not is_pg(conn):
        return Entries.concat(parts)
    for o in _openings(conn, holder_type, product_code, None):
        ids, base, granted, carried = _slot_columns(conn, o, cache)
        n = len(ids)
        zero = np.zeros(n, dtype=np.int64)
        assert o.period_start is not None
        start = np.full(n, epoch_us(o.period_start), dtype=np.int64)
        end = np.full(n, epoch_us(o.period_end) if o.period_end is not None else -1, dtype=np.int64)
        version = np.full(n, o.rule_version_id, dtype=np.int64)
        parts.append(Entries(zero, ids, version, start, end, base, granted, carried, zero, zero, zero))
    return Entries.concat(parts)


def holder_rows(conn: Connection, holder_type: str, holder_id: int) -> list[dict[str, Any]]:
    """A holder's grants not yet materialised, as untouched ``allowances`` rows (id 0: no row yet) at
    the station the ledger will tie them to when it materialises them."""
    if not is_pg(conn):
        return []
    rows = conn.execute(text(_HOLDER_GRANTS), {"t": holder_type, "hid": holder_id}).all()
    return [
        {
            "id": 0,
            "holder_type": holder_type,
            "holder_id": holder_id,
            "product_code": p,
            "rule_version_id": int(v),
            "period_start": s,
            "period_end": e,
            "base_qty": int(b),
            "granted_qty": int(g),
            "used_qty": 0,
            "held_qty": 0,
            "carried_qty": int(c),
            "topup_qty": 0,
            "last_redeemed_at": None,
            "home_point_code": home,  # the station the holder is tied to (RULES.md), as MATERIALISE
            "binding_changes": 0,
        }
        for p, v, s, e, b, g, c, home in rows
    ]



@dataclass(frozen=True, slots=True)
class Pruned:
    runs: int
    blocks: int


# Runs all of whose openings ended by the cut-off and were followed by an opening of the same product.
_PRUNABLE = (
    "SELECT r.id FROM grant_runs r WHERE NOT EXISTS (SELECT 1 FROM period_openings o WHERE o.run_id = r.id "
    "AND (o.period_end IS NULL OR o.period_end > :before OR NOT EXISTS (SELECT 1 FROM period_openings n "
    "WHERE n.holder_type = o.holder_type AND n.product_code = o.product_code "
    "AND n.period_start >= o.period_end))) ORDER BY r.id"
)


def prune(conn: Connection, before: datetime, at: datetime) -> Pruned:
    """Drop the grants of runs whose periods all ended by ``before`` and were succeeded (PostgreSQL;
    the caller holds the openings lock, so no opening reads a run while it goes)."""
    if not is_pg(conn):
        return Pruned(0, 0)
    runs = [int(r) for r in conn.execute(text(_PRUNABLE), {"before": before}).scalars()]
    if not runs:
        return Pruned(0, 0)
    conn.execute(
        text("UPDATE period_openings SET run_id = NULL, slot = NULL, grants_pruned_at = :at "
             "WHERE run_id = ANY(:runs)"),
        {"at": at, "runs": runs},
    )
    blocks = conn.execute(text("DELETE FROM allowance_grants WHERE run_id = ANY(:runs)"), {"runs": runs})
    conn.execute(text("DELETE FROM grant_runs WHERE id = ANY(:runs)"), {"runs": runs})
    return Pruned(len(runs), int(blocks.rowcount))
