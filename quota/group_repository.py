"""SQL of one group commit, in three phases: read cards and points; lock allowances, read stored
entries and lock stock; write allowances, journal and stock.

On PostgreSQL each phase is one pipelined round trip (``quota.ledger_pg``); on SQLite (one writer,
``BEGIN IMMEDIATE``) the portable statements run one after another.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from quota import ledger_pg as pg
from quota import ledger_repository as repo
from quota import stock_repository as stock_repo
from quota.dialect import is_pg
from quota.domain.decide import AllowanceState


def _products(products: object) -> frozenset[str]:
    listed = json.loads(products) if isinstance(products, str) else products
    return frozenset(listed or ())  # type: ignore[arg-type]


def read(
    conn: Connection, serials: Sequence[str], codes: Sequence[str]
) -> tuple[dict[str, repo.CardRow], dict[str, frozenset[str]]]:
    if not is_pg(conn):
        return repo.find_cards(conn, serials), repo.find_points(conn, codes)
    card_rows, point_rows = pg.read_phase(conn, sorted(set(serials)), sorted(set(codes)))
    cards = {r[0]: repo.CardRow(r[0], r[1], r[2], int(r[3]), r[4]) for r in card_rows}
    points = {code: _products(products) for code, products, active in point_rows if active}
    return cards, points


def lock(
    conn: Connection,
    keys: Sequence[repo.HolderKey],
    now: datetime,
    entry_ids: Sequence[str],
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[repo.HolderKey, AllowanceState], dict[str, dict[str, Any]], dict[tuple[str, str], int]]:
    """Allowance rows locked in id order, entries already stored under these ids, tracked stock less
    what pending holds set aside."""
    if not is_pg(conn):
        return (repo.lock_current_allowances(conn, keys, now), repo.find_entries(conn, entry_ids),
                stock_repo.lock_available(conn, pairs, now))
    rows, entries, stock = pg.lock_phase(conn, sorted(set(keys)), now, sorted(set(entry_ids)),
                                         sorted(set(pairs)))
    states = [AllowanceState._make(row) for row in rows]
    return (
        {(s.holder_type, s.holder_id, s.product_code): s for s in states},
        {e["entry_id"]: repo.entry_row(e) for e in entries},
        {(p, q): int(b) for p, q, b in stock},
    )


def write(
    conn: Connection,
    states: Sequence[AllowanceState],
    journal: Sequence[Mapping[str, Any]],
    dispensed: Mapping[tuple[str, str], int],
    bound: Sequence[tuple[repo.HolderKey, str]],
    now: datetime,
) -> None:
    """``bound``: keys whose card was tied to its first station in this group, with the station."""
    if not is_pg(conn):
        repo.write_allowances(conn, states)
        repo.insert_entries(conn, journal)
        stock_repo.add_dispensed(conn, dispensed)
        repo.adopt_pending_homes(conn, bound, now)
        return
    pg.write_phase(conn, [repo.allowance_doc(s) for s in states], journal,
                   [(p, q, d) for (p, q), d in sorted(dispensed.items()) if d],
                   [(*key, point) for key, point in sorted(bound)], now)
