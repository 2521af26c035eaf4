"""PostgreSQL forms of the group commit statements: one array parameter per column.

A group of hundreds of redemptions must cost a handful of statements whose text never changes
(psycopg and the server then reuse the parse and the plan): every list travels as an array and is
joined with ``unnest``, rows are locked with ``FOR UPDATE`` in id (or key) order, and the journal rows
are appended by one ``INSERT … SELECT FROM unnest``. ``quota.ledger_repository`` calls these on
PostgreSQL and keeps portable forms for SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

ALLOWANCE_COLUMNS = (
    "id, holder_type, holder_id, product_code, rule_version_id, period_start, period_end, base_qty, "
    "granted_qty, used_qty, held_qty, carried_qty, topup_qty, last_redeemed_at, home_point_code, "
    "binding_changes"
)

_CARDS = text(
    "SELECT c.serial, c.state, c.holder_type, c.holder_id, p.family_id FROM cards c "
    "LEFT JOIN persons p ON c.holder_type = 'person' AND p.id = c.holder_id "
    "WHERE c.serial = ANY(CAST(:serials AS text[]))"
)
_POINTS = text("SELECT code, products, active FROM points WHERE code = ANY(CAST(:codes AS text[]))")
_LOCK_ALLOWANCES = text(
    f"SELECT {ALLOWANCE_COLUMNS} FROM allowances WHERE id IN ("
    "SELECT DISTINCT ON (x.holder_type, x.holder_id, x.product_code) x.id FROM allowances x "
    "JOIN unnest(CAST(:t AS text[]), CAST(:i AS bigint[]), CAST(:p AS text[])) AS k(t, i, p) "
    "ON x.holder_type = k.t AND x.holder_id = k.i AND x.product_code = k.p "
    "WHERE x.period_start <= :now "
    "ORDER BY x.holder_type, x.holder_id, x.product_code, x.period_start DESC"
    ") ORDER BY id FOR UPDATE"
)
_ENTRIES = text("SELECT * FROM journal WHERE entry_id = ANY(CAST(:ids AS text[]))")
_JOURNAL_ARRAYS = (
    ("entry_id", "text"), ("kind", "text"), ("result", "text"), ("allowance_id", "bigint"),
    ("holder_type", "text"), ("holder_id", "bigint"), ("product_code", "text"), ("point_code", "text"),
    ("card_serial", "text"), ("quantity_qty", "bigint"), ("price_minor", "bigint"),
    ("remaining_qty", "bigint"), ("payload_hash", "text"), ("ref_entry_id", "text"), ("actor", "text"),
    ("reason", "text"), ("created_at", "timestamptz"),
)
_JOURNAL_COLUMNS = ", ".join(n for n, _ in _JOURNAL_ARRAYS)
_INSERT_JOURNAL = text(
    f"INSERT INTO journal ({_JOURNAL_COLUMNS}) SELECT {_JOURNAL_COLUMNS} "
    "FROM json_populate_recordset(NULL::journal, CAST(:doc AS json))"
)
_UPDATE_ALLOWANCES = text(
    "UPDATE allowances a SET period_start = u.period_start, period_end = u.period_end, "
    "granted_qty = u.granted_qty, used_qty = u.used_qty, held_qty = u.held_qty, "
    "carried_qty = u.carried_qty, topup_qty = u.topup_qty, last_redeemed_at = u.last_redeemed_at, "
    "home_point_code = u.home_point_code, binding_changes = u.binding_changes "
    "FROM json_populate_recordset(NULL::allowances, CAST(:doc AS json)) AS u WHERE a.id = u.id"
)
_LOCK_STOCK = text(
    "SELECT s.point_code, s.product_code, s.delivered_qty - s.dispensed_qty FROM point_stock s "
    "JOIN unnest(CAST(:pt AS text[]), CAST(:pr AS text[])) AS k(pt, pr) "
    "ON s.point_code = k.pt AND s.product_code = k.pr ORDER BY s.point_code, s.product_code FOR UPDATE OF s"
)
_ADD_DISPENSED = text(
    "UPDATE point_stock s SET dispensed_qty = s.dispensed_qty + k.d "
    "FROM unnest(CAST(:pt AS text[]), CAST(:pr AS text[]), CAST(:d AS bigint[])) AS k(pt, pr, d) "
    "WHERE s.point_code = k.pt AND s.product_code = k.pr"
)


def cards(conn: Connection, serials: list[str]) -> Sequence[Any]:
    return conn.execute(_CARDS, {"serials": serials}).all()


def points(conn: Connection, codes: list[str]) -> Sequence[Any]:
    return conn.execute(_POINTS, {"codes": codes}).all()


def lock_allowances(conn: Connection, keys: list[tuple[str, int, str]], now: datetime) -> Sequence[Any]:
    return conn.execute(
        _LOCK_ALLOWANCES,
        {"t": [k[0] for k in keys], "i": [k[1] for k in keys], "p": [k[2] for k in keys], "now": now},
    ).mappings().all()


def entries(conn: Connection, entry_ids: list[str]) -> Sequence[Any]:
    return conn.execute(_ENTRIES, {"ids": entry_ids}).mappings().all()


def _json(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def insert_entries(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """All journal rows of a group in one statement: one JSON document, parsed by the server in C
    (psycopg's per-element array encoding in Python cost more than the INSERT itself)."""
    conn.execute(_INSERT_JOURNAL, {"doc": json.dumps(list(rows), default=_json)})


def update_allowances(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    conn.execute(_UPDATE_ALLOWANCES, {"doc": json.dumps(list(rows), default=_json)})


def lock_stock(conn: Connection, pairs: list[tuple[str, str]]) -> Sequence[Any]:
    return conn.execute(_LOCK_STOCK, {"pt": [p for p, _ in pairs], "pr": [q for _, q in pairs]}).all()


def add_dispensed(conn: Connection, dispensed: list[tuple[str, str, int]]) -> None:
    conn.execute(_ADD_DISPENSED, {"pt": [d[0] for d in dispensed], "pr": [d[1] for d in dispensed],
                                  "d": [d[2] for d in dispensed]})
