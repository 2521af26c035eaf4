"""Holder attributes from the registry tables, as numpy columns (a repository: all its SQL is here).

Opening a period reads millions of families and persons, so rows never become Python objects on
PostgreSQL: every query returns integer columns only (text is coded in SQL: a governorate is its
position in the configured list), and each column travels as one binary string that numpy reads
in place (a COPY out would cost one protocol message, and a Python wake-up, per row). SQLite, the
single-point default, takes the ordinary row path.

Attributes are judged as of a day (the period start): ages, exclusions in force, licence states.
A vehicle counts as excluded when it or its owner's family is on the exclusion list; its
``nth_vehicle`` is its rank by id among the vehicles of its owner's family.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from quota.domain.eligibility import HolderColumns, IntArray, ages_at
from quota.domain.rules import FUELS, VEHICLE_KINDS


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def int_columns(
    conn: Connection, sql: str, params: dict[str, Any], ncols: int, wide: bool = False
) -> list[IntArray]:
    """Run a query whose columns are all non-null integers; return one int64 array per column.

    On PostgreSQL each column comes back as a single ``bytea`` (``string_agg`` of ``int4send``, or
    ``int8send`` when ``wide``): one value per column instead of one protocol message per row,
    parsed by ``np.frombuffer``. Registry ids, days and codes fit 32 bits, which halves the work.
    """
    if _is_pg(conn):
        names = ", ".join(f"c{i}" for i in range(ncols))
        send, cast, dtype = ("int8send", "bigint", ">i8") if wide else ("int4send", "int", ">i4")
        aggs = ", ".join(f"string_agg({send}(c{i}::{cast}), ''::bytea)" for i in range(ncols))
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(f"SELECT {aggs} FROM ({sql}) AS q({names})", params)
            row = cur.fetchone()
        return [
            np.zeros(0, np.int64) if col is None else np.frombuffer(col, dtype=dtype).astype(np.int64)
            for col in row
        ]
    result = conn.execute(text(sql.replace("%(", ":").replace(")s", "")), params).all()
    table = np.asarray(result, dtype=np.int64).reshape(len(result), ncols)
    return [table[:, i].copy() for i in range(ncols)]


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
    pos = np.searchsorted(ids, keys)
    pos = np.minimum(pos, max(len(ids) - 1, 0))
    found = (ids[pos] == keys) if len(ids) else np.zeros(len(keys), bool)
    return np.where(found, pos, -1).astype(np.int64)


def _excluded(conn: Connection, holder_type: str, on: date) -> IntArray:
    (ids,) = int_columns(
        conn,
        "SELECT holder_id FROM exclusions WHERE holder_type = %(t)s "
        "AND since <= %(on)s AND (until IS NULL OR until >= %(on)s)",
        {"t": holder_type, "on": on},
        1,
    )
    return ids


def _persons(
    conn: Connection, family_sql: str = "", params: dict[str, Any] | None = None, *, ids: bool, ages: bool
) -> tuple[IntArray, IntArray, IntArray]:
    """Living persons (of the families ``family_sql`` selects): id, family id, birth day since 1970.

    Only the columns asked for are read (the others come back empty): a rule set without age
    predicates needs family ids only, which halves the largest read of an opening.
    """
    days = (
        "birth_date - DATE '1970-01-01'"
        if _is_pg(conn)
        else "CAST(julianday(birth_date) - 2440587.5 AS INTEGER)"
    )
    cols = [c for c, want in (("id", ids), ("family_id", True), (days, ages)) if want]
    where = f" AND family_id IN ({family_sql})" if family_sql else ""
    got = iter(
        int_columns(
            conn, f"SELECT {', '.join(cols)} FROM persons WHERE alive{where}", params or {}, len(cols)
        )
    )
    empty = np.zeros(0, dtype=np.int64)
    pid = next(got) if ids else empty
    fid = next(got)
    born = next(got) if ages else empty
    return pid, fid, born


def _ages(born_days: IntArray, on: date) -> IntArray:
    return ages_at(born_days.astype("datetime64[D]"), on)


def families(
    conn: Connection,
    on: date,
    governorates: tuple[str, ...],
    family_sql: str = "",
    params: dict[str, Any] | None = None,
    ages: bool = True,
) -> HolderColumns:
    """Active families (only those ``family_sql`` selects, when given); members' ages if ``ages``."""
    where = f" AND id IN ({family_sql})" if family_sql else ""
    fid, gov = int_columns(
        conn,
        f"SELECT id, {_gov_code('governorate', governorates)} FROM families WHERE status = 'active'{where}",
        params or {},
        2,
    )
    order = np.argsort(fid, kind="stable")
    fid, gov = fid[order], gov[order]
    _, member_family, born = _persons(conn, family_sql, params, ids=False, ages=ages)
    member_holder = positions(fid, member_family)
    keep = member_holder >= 0
    member_holder = member_holder[keep]
    return HolderColumns.build(
        "family",
        fid,
        (*governorates, "unknown"),
        gov,
        family_size=np.bincount(member_holder, minlength=len(fid)),
        excluded=np.isin(fid, _excluded(conn, "family", on)),
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
) -> HolderColumns:
    fam = families(conn, on, governorates, family_sql, params, ages=False)
    pid, member_family, born = _persons(conn, family_sql, params, ids=True, ages=True)
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
        excluded=np.isin(pid, _excluded(conn, "person", on)) | fam.excluded[idx],
        member_holder=np.arange(len(pid)),
        member_age=_ages(born, on),
    )


def _valid_licence_holders(conn: Connection, on: date) -> IntArray:
    (ids,) = int_columns(
        conn,
        "SELECT DISTINCT l.person_id FROM licences l "
        "WHERE l.issued_on <= %(on)s AND l.expires_on >= %(on)s AND COALESCE(("
        "SELECT s.state FROM licence_states s WHERE s.licence_id = l.id AND s.effective_on <= %(on)s "
        "ORDER BY s.effective_on DESC, s.id DESC LIMIT 1), 'valid') = 'valid'",
        {"on": on},
        1,
    )
    return ids


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
) -> HolderColumns:
    where = f" WHERE p.family_id IN ({family_sql})" if family_sql else ""
    vid, gov, kind, fuel, cc, year, owner, family = int_columns(
        conn,
        f"SELECT v.id, {_gov_code('v.governorate', governorates)}, "
        f"{_code('v.kind', VEHICLE_KINDS)}, {_code('v.fuel', FUELS)}, v.engine_cc, "
        "v.model_year, v.owner_person_id, p.family_id "
        f"FROM vehicles v JOIN persons p ON p.id = v.owner_person_id{where} ORDER BY v.id",
        params or {},
        8,
    )
    excluded = np.isin(vid, _excluded(conn, "vehicle", on)) | np.isin(family, _excluded(conn, "family", on))
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
        licence_valid=np.isin(owner, _valid_licence_holders(conn, on)),
        nth_vehicle=nth_in_group(family, vid),
    )


LOADERS = {"family": families, "person": persons, "vehicle": vehicles}


def load(
    conn: Connection, holder_types: Iterable[str], on: date, governorates: tuple[str, ...], ages: bool = True
) -> dict[str, HolderColumns]:
    """The populations the given holder types need, as of ``on`` (members' ages only if ``ages``)."""
    return {t: LOADERS[t](conn, on, governorates, ages=ages) for t in sorted(set(holder_types))}


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
