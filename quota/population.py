"""Holder attributes from the registry tables, as numpy columns (a repository: all its SQL is here).

Opening a period reads millions of families and persons, so rows never become Python objects on
PostgreSQL: every query returns integer columns only (text is coded in SQL: a governorate is its
position in the configured list), and each column travels as one binary string that numpy reads
in place (a COPY out would cost one protocol message, and a Python wake-up, per row). SQLite, the
single-point default, takes the ordinary row path.

A whole-registry read on PostgreSQL (``load``) spreads its queries over ``READ_WORKERS`` extra
connections that import the caller's snapshot (``pg_export_snapshot``), so they see exactly the
rows the caller's transaction sees; the large tables are read in slices of pages (``ctid`` ranges,
one TID range scan each), so the persons scan and its aggregation use both cores. PostgreSQL 15 has
no parallel ``string_agg``. An exported snapshot does not carry the exporter's own uncommitted
writes, so a caller whose transaction has written anything (an xid is assigned), a serializable
caller (its reads must stay in its own transaction), an autocommit connection and a small registry
all read on the caller's connection alone, as before.

Attributes are judged as of a day (the period start): ages, exclusions in force, licence states.
A vehicle counts as excluded when it or its owner's family is on the exclusion list; its
``nth_vehicle`` is its rank by id among the vehicles of its owner's family of the same kind and fuel.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from typing import Any

import numpy as np
import psycopg
from psycopg import sql as pgsql
from sqlalchemy import Connection, text

from quota.dialect import is_pg
from quota.domain.eligibility import HolderColumns, IntArray, ages_at
from quota.domain.rules import FUELS, VEHICLE_KINDS

READ_WORKERS = 2  # connections a PostgreSQL population read spreads over (≤ 1: the caller's alone)
CHUNK_BLOCKS = 4096  # pages (8 kB) per slice of a split table; smaller tables are read whole
MAX_CHUNKS = 8  # slices per table at most (enough for the two workers to finish together)
SPLIT_TABLES = ("families", "persons")  # the tables whose reads are sliced

Columns = Callable[[], list[IntArray]]  # a query's columns, waited for when called


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _pg_columns(
    raw: psycopg.Connection[Any], sql: str, params: dict[str, Any], ncols: int, wide: bool = False
) -> list[IntArray]:
    names = ", ".join(f"c{i}" for i in range(ncols))
    if wide:
        values = [f"int8send(c{i}::bigint)" for i in range(ncols)]
    else:  # two 32-bit columns travel as one 64-bit value: one aggregation step per row, not two
        values = [
            f"int8send((c{i}::int::bigint << 32) | (c{i + 1}::int::bigint & 4294967295))"
            if i + 1 < ncols
            else f"int4send(c{i}::int)"
            for i in range(0, ncols, 2)
        ]
    aggs = ", ".join(f"string_agg({v}, ''::bytea)" for v in values)
    # binary results: the bytea arrives as is (text format would hex-encode it on the server
    # and decode it here: a third of the time of the largest read)
    with raw.cursor(binary=True) as cur:
        cur.execute(f"SELECT {aggs} FROM ({sql}) AS q({names})", params)
        row = cur.fetchone()
    assert row is not None
    out: list[IntArray] = []
    for k, col in enumerate(row):
        pair = not wide and 2 * k + 1 < ncols
        if col is None:
            out += [np.zeros(0, np.int64) for _ in range(2 if pair else 1)]
        elif pair:
            both = np.frombuffer(col, dtype=">i8").astype(np.int64)
            out.append(both >> 32)
            out.append((both & 0xFFFFFFFF).astype(np.uint32).view(np.int32).astype(np.int64))
        else:
            out.append(np.frombuffer(col, dtype=">i8" if wide else ">i4").astype(np.int64))
    return out


def int_columns(
    conn: Connection, sql: str, params: dict[str, Any], ncols: int, wide: bool = False
) -> list[IntArray]:
    """Run a query whose columns are all non-null integers; return one int64 array per column.

    On PostgreSQL each column comes back as a single ``bytea`` (``string_agg`` of ``int4send``, or
    ``int8send`` when ``wide``): one value per column instead of one protocol message per row,
    parsed by ``np.frombuffer``. Registry ids, days and codes fit 32 bits, which halves the work;
    and two such columns are packed into one 64-bit value per row (one aggregate instead of two).
    """
    if is_pg(conn):
        return _pg_columns(_driver(conn), sql, params, ncols, wide)
    result = conn.execute(text(sql.replace("%(", ":").replace(")s", "")), params).all()
    table = np.asarray(result, dtype=np.int64).reshape(len(result), ncols)
    return [table[:, i].copy() for i in range(ncols)]


class _SnapshotPool:
    """Extra connections in read-only transactions on one exported snapshot, with a thread each."""

    def __init__(self, conns: list[psycopg.Connection[Any]], blocks: dict[str, int]) -> None:
        self._conns = conns
        self._idle: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        for c in conns:
            self._idle.put(c)
        self._threads = ThreadPoolExecutor(len(conns), thread_name_prefix="population-read")
        self.blocks = blocks

    def _run(self, sql: str, params: dict[str, Any], ncols: int) -> list[IntArray]:
        raw = self._idle.get()  # as many threads as connections: one is always idle
        try:
            return _pg_columns(raw, sql, params, ncols)
        finally:
            self._idle.put(raw)

    def _slices(self, table: str) -> list[str]:
        """``ctid`` conditions splitting ``table`` into page ranges (the last one open-ended)."""
        blocks = self.blocks.get(table, 0)
        n = min(MAX_CHUNKS, blocks // max(CHUNK_BLOCKS, 1))
        if n < 2:
            return [""]
        bounds = [blocks * i // n for i in range(1, n)]
        lows = [""] + [f" AND ctid >= '({b},0)'::tid" for b in bounds]
        highs = [f" AND ctid < '({b},0)'::tid" for b in bounds] + [""]
        return [lo + hi for lo, hi in zip(lows, highs, strict=True)]

    def columns(self, sql: str, params: dict[str, Any], ncols: int, split: str) -> Columns:
        slices = self._slices(split) if split else [""]
        futures: list[Future[list[IntArray]]] = [
            self._threads.submit(self._run, sql + s, params, ncols) for s in slices
        ]

        def result() -> list[IntArray]:
            parts = [f.result() for f in futures]  # in page order: the order of one whole scan
            return parts[0] if len(parts) == 1 else [np.concatenate(c) for c in zip(*parts, strict=True)]

        return result

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        for c in self._conns:
            c.close()  # ends its read-only transaction


class Reader:
    """Where the queries of one population read run (``reader()`` makes one).

    On the caller's connection, one after another; or, when ``parallel``, concurrently on extra
    connections sharing the caller's snapshot, a large table's scan split into page ranges.
    """

    def __init__(self, conn: Connection, pool: _SnapshotPool | None = None) -> None:
        self.conn = conn
        self._pool = pool

    @property
    def parallel(self) -> bool:
        return self._pool is not None

    def columns(self, sql: str, params: dict[str, Any], ncols: int, split: str = "") -> Columns:
        """``int_columns``, started now and waited for when the result is called.

        ``split`` names the table to read in page ranges; the query must then read that table
        unaliased and end with its WHERE clause (a ``ctid`` range is appended to it).
        """
        if self._pool is None:
            cols = int_columns(self.conn, sql, params, ncols)
            return lambda: cols
        return self._pool.columns(sql, params, ncols, split)


def _snapshot_pool(conn: Connection, workers: int) -> _SnapshotPool | None:
    """Extra connections on the caller's snapshot, or None where they would not see what it sees."""
    raw = _driver(conn)
    if raw.autocommit or raw.info.server_version < 140000:  # TID range scans: PostgreSQL 14
        return None
    sizes = ", ".join(
        f"COALESCE(pg_relation_size(to_regclass('{t}')), 0) / current_setting('block_size')::int"
        for t in SPLIT_TABLES
    )
    with raw.cursor() as cur:
        cur.execute(
            "SELECT pg_current_xact_id_if_assigned() IS NULL "
            "AND current_setting('transaction_isolation') <> 'serializable', "
            f"current_setting('search_path'), {sizes}"
        )
        row = cur.fetchone()
        assert row is not None
        clean, search_path, *sizes_got = row
        blocks = dict(zip(SPLIT_TABLES, (int(b) for b in sizes_got), strict=True))
        if not clean or max(blocks.values()) < 2 * CHUNK_BLOCKS:
            return None
        cur.execute("SELECT pg_export_snapshot()")
        got = cur.fetchone()
        assert got is not None
        snapshot = str(got[0])
    conns: list[psycopg.Connection[Any]] = []
    try:
        for _ in range(workers):
            w = psycopg.connect(raw.info.dsn, password=raw.info.password, autocommit=True)
            conns.append(w)
            w.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            w.execute(pgsql.SQL("SET TRANSACTION SNAPSHOT {}").format(pgsql.Literal(snapshot)))
            w.execute("SELECT set_config('search_path', %s, true)", [search_path])
    except psycopg.Error:  # e.g. no connection to spare: read on the caller's alone
        for w in conns:
            w.close()
        return None
    return _SnapshotPool(conns, blocks)


@contextmanager
def reader(conn: Connection, workers: int = READ_WORKERS) -> Iterator[Reader]:
    """A ``Reader`` for a whole-registry read on ``conn``: parallel on PostgreSQL when it can be."""
    pool = _snapshot_pool(conn, workers) if workers > 1 and is_pg(conn) else None
    try:
        yield Reader(conn, pool)
    finally:
        if pool is not None:
            pool.close()


def governorates_in(conn: Connection) -> tuple[str, ...]:
    """The governorates present in the registry, for a deployment that configures no list."""
    rows = conn.execute(text("SELECT governorate FROM families UNION SELECT governorate FROM vehicles"))
    return tuple(sorted(str(g) for (g,) in rows))


def _gov_code(column: str, governorates: tuple[str, ...]) -> str:
    """SQL giving a governorate's 0-based position in the list (unknown: len(list))."""
    cases = " ".join(
        f"WHEN '{g}' THEN {i}" for i, g in enumerate(governorates) if g.replace("_", "").isalnum()
    )
    return f"CASE {column} {cases} ELSE {len(governorates)} END"


def positions(ids: IntArray, keys: IntArray) -> IntArray:
    """Index of each key in the sorted ``ids`` (-1 where absent)."""
    if len(ids) and len(keys) and ids[-1] - ids[0] < 4 * len(ids) + 1024 and bool(np.all(ids[1:] > ids[:-1])):
        # dense, strictly increasing ids (registry ids): a lookup table instead of a binary search
        lo = int(ids[0])
        table = np.full(int(ids[-1]) - lo + 1, -1, dtype=np.int64)
        table[ids - lo] = np.arange(len(ids))
        at = keys - lo
        inside = (at >= 0) & (at < len(table))
        return np.where(inside, table[np.where(inside, at, 0)], -1).astype(np.int64)
    pos = np.searchsorted(ids, keys)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (ids[pos] == keys) if len(ids) else np.zeros(len(keys), bool)
    return np.where(found, pos, -1).astype(np.int64)


def _excluded(rd: Reader, holder_type: str, on: date) -> Callable[[], IntArray]:
    got = rd.columns(
        "SELECT holder_id FROM exclusions WHERE holder_type = %(t)s "
        "AND since <= %(on)s AND (until IS NULL OR until >= %(on)s)",
        {"t": holder_type, "on": on},
        1,
    )
    return lambda: got()[0]


def _persons(
    rd: Reader, family_sql: str = "", params: dict[str, Any] | None = None, *, ids: bool, ages: bool
) -> Callable[[], tuple[IntArray, IntArray, IntArray]]:
    """Living persons (of the families ``family_sql`` selects): id, family id, birth day since 1970.

    Only the columns asked for are read (the others come back empty): a rule set without age
    predicates needs family ids only, which halves the largest read of an opening.
    """
    days = (
        "birth_date - DATE '1970-01-01'"
        if is_pg(rd.conn)
        else "CAST(julianday(birth_date) - 2440587.5 AS INTEGER)"
    )
    cols = [c for c, want in (("id", ids), ("family_id", True), (days, ages)) if want]
    where = f" AND family_id IN ({family_sql})" if family_sql else ""
    pending = rd.columns(
        f"SELECT {', '.join(cols)} FROM persons WHERE alive{where}", params or {}, len(cols), "persons"
    )

    def result() -> tuple[IntArray, IntArray, IntArray]:
        got = iter(pending())
        empty = np.zeros(0, dtype=np.int64)
        pid = next(got) if ids else empty
        fid = next(got)
        born = next(got) if ages else empty
        return pid, fid, born

    return result


def _ages(born_days: IntArray, on: date) -> IntArray:
    if len(born_days) == 0:
        return ages_at(born_days.astype("datetime64[D]"), on)
    lo, hi = int(born_days.min()), int(born_days.max())
    if hi - lo > max(len(born_days), 1 << 16):
        return ages_at(born_days.astype("datetime64[D]"), on)
    # millions of members, tens of thousands of birth days: the age of each day once, then a lookup
    by_day = ages_at(np.arange(lo, hi + 1).astype("datetime64[D]"), on)
    return by_day[born_days - lo]


def families(
    conn: Connection,
    on: date,
    governorates: tuple[str, ...],
    family_sql: str = "",
    params: dict[str, Any] | None = None,
    ages: bool = True,
    *,
    rd: Reader | None = None,
) -> HolderColumns:
    """Active families (only those ``family_sql`` selects, when given); members' ages if ``ages``.

    ``rd`` (from ``reader``) runs the queries; by default they run on ``conn``, one after another.
    """
    rd = rd or Reader(conn)
    where = f" AND id IN ({family_sql})" if family_sql else ""
    pending = rd.columns(
        f"SELECT id, {_gov_code('governorate', governorates)} FROM families WHERE status = 'active'{where}",
        params or {},
        2,
        "families",
    )
    members = _persons(rd, family_sql, params, ids=False, ages=ages)
    excluded = _excluded(rd, "family", on)
    fid, gov = pending()
    order = np.argsort(fid, kind="stable")
    fid, gov = fid[order], gov[order]
    _, member_family, born = members()
    member_holder = positions(fid, member_family)
    keep = member_holder >= 0
    member_holder = member_holder[keep]
    return HolderColumns.build(
        "family",
        fid,
        (*governorates, "unknown"),
        gov,
        family_size=np.bincount(member_holder, minlength=len(fid)),
        excluded=np.isin(fid, excluded()),
        member_holder=member_holder if ages else None,
        member_age=_ages(born[keep], on) if ages else None,
    )


def persons(
    conn: Connection,
    on: date,
    governorates: tuple[str, ...],
    family_sql: str = "",
    params: dict[str, Any] | None = None,
    ages: bool = True,
    *,
    rd: Reader | None = None,
) -> HolderColumns:
    rd = rd or Reader(conn)
    people = _persons(rd, family_sql, params, ids=True, ages=True)
    excluded = _excluded(rd, "person", on)
    fam = families(conn, on, governorates, family_sql, params, ages=False, rd=rd)
    pid, member_family, born = people()
    order = np.argsort(pid)
    pid, member_family, born = pid[order], member_family[order], born[order]
    idx = positions(fam.ids, member_family)
    keep = idx >= 0
    pid, idx, born = pid[keep], idx[keep], born[keep]
    return HolderColumns.build(
        "person",
        pid,
        fam.governorates,
        fam.governorate[idx],
        family_size=fam.family_size[idx],
        excluded=np.isin(pid, excluded()) | fam.excluded[idx],
        member_holder=np.arange(len(pid)),
        member_age=_ages(born, on),
    )


def _valid_licence_holders(rd: Reader, on: date) -> Callable[[], IntArray]:
    got = rd.columns(
        "SELECT DISTINCT l.person_id FROM licences l "
        "WHERE l.issued_on <= %(on)s AND l.expires_on >= %(on)s AND COALESCE(("
        "SELECT s.state FROM licence_states s WHERE s.licence_id = l.id AND s.effective_on <= %(on)s "
        "ORDER BY s.effective_on DESC, s.id DESC LIMIT 1), 'valid') = 'valid'",
        {"on": on},
        1,
    )
    return lambda: got()[0]


def _code(column: str, vocab: tuple[str, ...]) -> str:
    cases = " ".join(f"WHEN '{v}' THEN {i}" for i, v in enumerate(vocab))
    return f"CASE {column} {cases} ELSE -1 END"


def nth_in_group(groups: IntArray, ids: IntArray) -> IntArray:
    """1-based rank of each id within its group, by id (vectorised)."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((ids, groups))
    g = groups[order]
    starts = np.r_[0, np.flatnonzero(g[1:] != g[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    rank = np.empty(len(ids), dtype=np.int64)
    rank[order] = np.arange(len(ids)) - run_start + 1
    return rank


def vehicles(
    conn: Connection,
    on: date,
    governorates: tuple[str, ...],
    family_sql: str = "",
    params: dict[str, Any] | None = None,
    ages: bool = True,
    *,
    rd: Reader | None = None,
) -> HolderColumns:
    rd = rd or Reader(conn)
    where = f" WHERE p.family_id IN ({family_sql})" if family_sql else ""
    pending = rd.columns(
        f"SELECT v.id, {_gov_code('v.governorate', governorates)}, "
        f"{_code('v.kind', VEHICLE_KINDS)}, {_code('v.fuel', FUELS)}, v.engine_cc, "
        "v.model_year, v.owner_person_id, p.family_id "
        f"FROM vehicles v JOIN persons p ON p.id = v.owner_person_id{where} ORDER BY v.id",
        params or {},
        8,
    )
    excluded_vehicles, excluded_families = _excluded(rd, "vehicle", on), _excluded(rd, "family", on)
    licensed = _valid_licence_holders(rd, on)
    vid, gov, kind, fuel, cc, year, owner, family = pending()
    excluded = np.isin(vid, excluded_vehicles()) | np.isin(family, excluded_families())
    return HolderColumns.build(
        "vehicle",
        vid,
        (*governorates, "unknown"),
        gov,
        family_size=np.ones(len(vid), dtype=np.int64),
        excluded=excluded,
        vehicle_kind=kind,
        fuel=fuel,
        engine_cc=cc,
        model_year=year,
        licence_valid=np.isin(owner, licensed()),
        nth_vehicle=nth_in_group(_kind_in_family(family, kind, fuel), vid),
    )


def _kind_in_family(family: IntArray, kind: IntArray, fuel: IntArray) -> IntArray:
    """One group per family, vehicle kind and fuel: a family's "second car" is its second private
    gasoline car, not a car that comes after the family's motorcycle or diesel van (which drew it into
    the free-price rule for a family's later cars)."""
    return (family.astype(np.int64) << 16) | ((kind.astype(np.int64) + 1) << 8) | (fuel.astype(np.int64) + 1)


LOADERS = {"family": families, "person": persons, "vehicle": vehicles}


def load(
    conn: Connection,
    holder_types: Iterable[str],
    on: date,
    governorates: tuple[str, ...],
    ages: bool = True,
    workers: int = READ_WORKERS,
) -> dict[str, HolderColumns]:
    """The populations the given holder types need, as of ``on`` (members' ages only if ``ages``).

    On PostgreSQL the read spreads over ``workers`` extra connections on the caller's snapshot
    where it can (see the module's notes); ``workers=1`` reads on ``conn`` alone.
    """
    with reader(conn, workers) as rd:
        return {t: LOADERS[t](conn, on, governorates, ages=ages, rd=rd) for t in sorted(set(holder_types))}


_FAMILY_OF = {
    "family": "SELECT %(holder_id)s",
    "person": "SELECT family_id FROM persons WHERE id = %(holder_id)s",
    "vehicle": "SELECT p.family_id FROM vehicles v JOIN persons p ON p.id = v.owner_person_id "
    "WHERE v.id = %(holder_id)s",
}


def one(
    conn: Connection, holder_type: str, holder_id: int, on: date, governorates: tuple[str, ...]
) -> HolderColumns | None:
    """A population of one, for explain: the holder's family is loaded (so ranks and sizes are right)."""
    cols = LOADERS[holder_type](conn, on, governorates, _FAMILY_OF[holder_type], {"holder_id": holder_id})
    pos = positions(cols.ids, np.asarray([holder_id], dtype=np.int64))[0]
    return None if pos < 0 else cols.take(int(pos))
