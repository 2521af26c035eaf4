"""PostgreSQL forms of the group commit statements: a few statements whose text never changes.

A group of hundreds of redemptions must cost a handful of statements (psycopg prepares them and the
server reuses the plan): every list travels as one JSON document joined with ``json_to_recordset``,
rows are locked with ``FOR UPDATE`` in id (or key) order, and the journal rows are appended by one
``INSERT … SELECT FROM json_populate_recordset``. ``quota.ledger_repository`` calls these on
PostgreSQL and keeps portable forms for SQLite.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

import orjson
import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection

from quota.grant_repository import MATERIALISE

ALLOWANCE_COLUMNS = (
    "id, holder_type, holder_id, product_code, rule_version_id, period_start, period_end, base_qty, "
    "granted_qty, used_qty, held_qty, carried_qty, topup_qty, last_redeemed_at, home_point_code, "
    "binding_changes"
)

def _raw(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under SQLAlchemy's, inside the same transaction: the group's statements
    skip SQLAlchemy's per-row result processing (a measurable share of a group's time)."""
    return cast("psycopg.Connection[Any]", conn.connection.driver_connection)


def _doc(values: object) -> str:
    """Lists travel as one JSON text parsed by the server in C: psycopg encodes array parameters
    element by element in Python, which cost more than the statements themselves."""
    return orjson.dumps(values).decode()


@lru_cache(maxsize=4096)
def iso(value: datetime) -> str:
    """A group's rows share a handful of times (its ``now``, period bounds): format each once."""
    return value.isoformat()


def journal_values(row: Mapping[str, Any]) -> list[Any]:
    try:  # a redemption's row has every column: one C-level lookup for all of them
        values = list(_journal_row(row))
    except KeyError:
        values = [row.get(name) for name in JOURNAL_FIELDS]
    created = values[-1]
    if isinstance(created, datetime):
        values[-1] = iso(created)
    return values


_CARDS = (
    "SELECT c.serial, c.state, c.holder_type, c.holder_id, p.family_id FROM cards c "
    "LEFT JOIN persons p ON c.holder_type = 'person' AND p.id = c.holder_id "
    "WHERE c.serial IN (SELECT json_array_elements_text(%(serials)s::json))"
)
_POINTS = (
    "SELECT code, products, active FROM points "
    "WHERE code IN (SELECT json_array_elements_text(%(codes)s::json))"
)
_LOCK_ALLOWANCES = (
    f"SELECT {ALLOWANCE_COLUMNS} FROM allowances WHERE id IN ("
    "SELECT DISTINCT ON (x.holder_type, x.holder_id, x.product_code) x.id FROM allowances x "
    "JOIN json_to_recordset(%(keys)s::json) AS k(t text, i bigint, p text) "
    "ON x.holder_type = k.t AND x.holder_id = k.i AND x.product_code = k.p "
    "WHERE x.period_start <= %(now)s "
    "ORDER BY x.holder_type, x.holder_id, x.product_code, x.period_start DESC"
    ") ORDER BY id FOR UPDATE"
)
_ENTRIES = "SELECT * FROM journal WHERE entry_id IN (SELECT json_array_elements_text(%(ids)s::json))"
_JOURNAL_COLUMNS = (
    "entry_id, kind, result, allowance_id, holder_type, holder_id, product_code, point_code, card_serial, "
    "quantity_qty, price_minor, remaining_qty, payload_hash, ref_entry_id, actor, reason, created_at"
)
# Rows travel as JSON arrays (positional: no key repeated per row), cast column by column. As jsonb:
# ``r->>n`` on plain json re-scans the row's text up to element n, so a 17-column journal row cost
# O(n²); parsed once to jsonb, a group's INSERT took 18 instead of 33 µs per row (350-row groups).
_JOURNAL_TYPES = ("text", "text", "text", "bigint", "text", "bigint", "text", "text", "text", "bigint",
                  "bigint", "bigint", "text", "text", "text", "text", "timestamptz")
JOURNAL_FIELDS = tuple(name.strip() for name in _JOURNAL_COLUMNS.split(","))
_journal_row = operator.itemgetter(*JOURNAL_FIELDS)
_INSERT_JOURNAL = (
    f"INSERT INTO journal ({_JOURNAL_COLUMNS}) SELECT "
    + ", ".join(f"(r->>{n})::{t}" for n, t in enumerate(_JOURNAL_TYPES))
    + " FROM jsonb_array_elements(%(doc)s::jsonb) AS r"
)
ALLOWANCE_FIELDS = ("id", "period_start", "period_end", "granted_qty", "used_qty", "held_qty", "carried_qty",
                    "topup_qty", "last_redeemed_at", "home_point_code", "binding_changes")
_ALLOWANCE_TYPES = ("bigint", "timestamptz", "timestamptz", "bigint", "bigint", "bigint", "bigint", "bigint",
                    "timestamptz", "text", "int")
_UPDATE_ALLOWANCES = (
    "UPDATE allowances a SET "
    + ", ".join(f"{name} = (r->>{n})::{t}" for n, (name, t) in enumerate(zip(ALLOWANCE_FIELDS,
                                                                              _ALLOWANCE_TYPES, strict=True))
                if name != "id")
    + " FROM jsonb_array_elements(%(doc)s::jsonb) AS r WHERE a.id = (r->>0)::bigint"
)
_LOCK_PAIRS = (
    "SELECT s.point_code, s.product_code, {balance} FROM point_stock s "
    "JOIN json_to_recordset(%(pairs)s::json) AS k(pt text, pr text) "
    "ON s.point_code = k.pt AND s.product_code = k.pr ORDER BY s.point_code, s.product_code FOR UPDATE OF s"
)
_LOCK_STOCK = _LOCK_PAIRS.format(balance="s.delivered_qty - s.dispensed_qty")
# The group's view of a tracked pair is its balance less what unexpired pending pump holds there reserve
# (a reservation sets the stock aside: a redemption must not take the fuel a running pump was promised).
# The holds are summed by a statement of their own, sent after the lock: a subquery of the locking
# statement reads the snapshot taken before it waited, so it missed a hold committed by the transaction
# it waited for (a redemption then took the pump's fuel), or still counted a hold that transaction had
# just posted (its fuel counted twice: a refusal ``point_out_of_stock`` that a retry replays).
_PENDING_HELD = (
    "SELECT h.point_code, a.product_code, sum(h.reserved_qty) FROM holds h "
    "JOIN allowances a ON a.id = h.allowance_id "
    "JOIN json_to_recordset(%(pairs)s::json) AS k(pt text, pr text) "
    "ON h.point_code = k.pt AND a.product_code = k.pr "
    "WHERE h.state = 'pending' AND h.expires_at > %(now)s GROUP BY h.point_code, a.product_code"
)
_ADD_DISPENSED = (
    "UPDATE point_stock s SET dispensed_qty = s.dispensed_qty + k.d "
    "FROM json_to_recordset(%(rows)s::json) AS k(pt text, pr text, d bigint) "
    "WHERE s.point_code = k.pt AND s.product_code = k.pr"
)

# A first binding's station for the holder's waiting rows that have none (``adopt_pending_homes``).
_ADOPT_HOMES = (
    "UPDATE allowances a SET home_point_code = k.pt "
    "FROM json_to_recordset(%(rows)s::json) AS k(t text, i bigint, p text, pt text) "
    "WHERE a.holder_type = k.t AND a.holder_id = k.i AND a.product_code = k.p "
    "AND a.period_start > %(now)s AND a.used_qty = 0 AND a.held_qty = 0 AND a.home_point_code IS NULL"
)


def _bound_doc(bound: Sequence[tuple[str, int, str, str]]) -> str:
    return _doc([{"t": t, "i": i, "p": p, "pt": pt} for t, i, p, pt in bound])


def adopt_pending_homes(conn: Connection, bound: Sequence[tuple[str, int, str, str]], now: datetime) -> None:
    _raw(conn).execute(_ADOPT_HOMES, {"rows": _bound_doc(bound), "now": now})


def cards(conn: Connection, serials: list[str]) -> list[tuple[Any, ...]]:
    return _raw(conn).execute(_CARDS, {"serials": _doc(serials)}).fetchall()


def points(conn: Connection, codes: list[str]) -> list[tuple[Any, ...]]:
    return _raw(conn).execute(_POINTS, {"codes": _doc(codes)}).fetchall()


def lock_allowances(
    conn: Connection, keys: list[tuple[str, int, str]], now: datetime
) -> list[tuple[Any, ...]]:
    """Rows in ``ALLOWANCE_COLUMNS`` order (the ``AllowanceState`` field order), live grants of the
    keys materialised first."""
    doc = _doc([{"t": t, "i": i, "p": p} for t, i, p in keys])
    raw = _raw(conn)
    raw.execute(MATERIALISE, {"keys": doc, "now": now})
    return raw.execute(_LOCK_ALLOWANCES, {"keys": doc, "now": now}).fetchall()


def entries(conn: Connection, entry_ids: list[str]) -> list[dict[str, Any]]:
    with _raw(conn).cursor(row_factory=dict_row) as cur:
        return cur.execute(_ENTRIES, {"ids": _doc(entry_ids)}).fetchall()


def insert_entries(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    _raw(conn).execute(_INSERT_JOURNAL, {"doc": _doc([journal_values(r) for r in rows])})


def update_allowances(conn: Connection, rows: Sequence[Sequence[Any]]) -> None:
    """``rows`` in ``ALLOWANCE_FIELDS`` order."""
    _raw(conn).execute(_UPDATE_ALLOWANCES, {"doc": _doc(list(rows))})


def lock_stock(conn: Connection, pairs: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    doc = _doc([{"pt": p, "pr": q} for p, q in pairs])
    return _raw(conn).execute(_LOCK_STOCK, {"pairs": doc}).fetchall()


def add_dispensed(conn: Connection, dispensed: list[tuple[str, str, int]]) -> None:
    doc = _doc([{"pt": p, "pr": q, "d": d} for p, q, d in dispensed])
    _raw(conn).execute(_ADD_DISPENSED, {"rows": doc})


# Pipelined phases: a group costs three round trips plus the commit -------------------------------
def read_phase(
    conn: Connection, serials: list[str], codes: list[str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Cards and points of a group, sent together."""
    raw = _raw(conn)
    with raw.pipeline():
        cards_cur = raw.cursor()
        cards_cur.execute(_CARDS, {"serials": _doc(serials)})
        points_cur = raw.cursor()
        points_cur.execute(_POINTS, {"codes": _doc(codes)})
    return cards_cur.fetchall(), points_cur.fetchall()


def lock_phase(
    conn: Connection,
    keys: list[tuple[str, int, str]],
    now: datetime,
    entry_ids: list[str],
    pairs: list[tuple[str, str]],
) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Materialise and lock the allowances, then read stored entries and lock the stock rows (their
    balance less what pending holds set aside), in one round trip (grants a period opened become
    ``allowances`` rows when first touched: grant_repository).

    The server runs them in order, so the entries are read after the locks are held: an id committed
    by a group that held one of these rows is seen (a racing id on no shared row is caught by the
    unique index and the group retried).
    """
    raw = _raw(conn)
    with raw.pipeline():
        lock_cur = raw.cursor()
        if keys:
            doc = _doc([{"t": t, "i": i, "p": p} for t, i, p in keys])
            raw.execute(MATERIALISE, {"keys": doc, "now": now})
            lock_cur.execute(_LOCK_ALLOWANCES, {"keys": doc, "now": now})
        entries_cur = raw.cursor(row_factory=dict_row)
        entries_cur.execute(_ENTRIES, {"ids": _doc(entry_ids)})
        pairs_doc = _doc([{"pt": p, "pr": q} for p, q in pairs])
        stock_cur = raw.cursor()
        stock_cur.execute(_LOCK_STOCK, {"pairs": pairs_doc})
        held_cur = raw.cursor()
        held_cur.execute(_PENDING_HELD, {"pairs": pairs_doc, "now": now})
    locked = lock_cur.fetchall() if keys else []
    held = {(p, q): int(h) for p, q, h in held_cur.fetchall()}
    stock = [(p, q, int(b) - held.get((p, q), 0)) for p, q, b in stock_cur.fetchall()]
    return locked, entries_cur.fetchall(), stock


def write_phase(
    conn: Connection,
    allowances: Sequence[Sequence[Any]],
    journal: Sequence[Mapping[str, Any]],
    dispensed: list[tuple[str, str, int]],
    bound: Sequence[tuple[str, int, str, str]],
    now: datetime,
) -> None:
    """The group's UPDATE, INSERT and stock update (and the stations of first bindings for rows
    waiting to take over, rare), sent together."""
    raw = _raw(conn)
    with raw.pipeline():
        if bound:
            raw.execute(_ADOPT_HOMES, {"rows": _bound_doc(bound), "now": now})
        if allowances:
            raw.execute(_UPDATE_ALLOWANCES, {"doc": _doc(list(allowances))})
        if journal:
            raw.execute(_INSERT_JOURNAL, {"doc": _doc([journal_values(r) for r in journal])})
        if dispensed:
            raw.execute(_ADD_DISPENSED, {"rows": _doc([{"pt": p, "pr": q, "d": d} for p, q, d in dispensed])})
