"""SQL of point stock: deliveries, the running (point, product) row, and the daily movements.

The running row (migration 0003) is locked and updated once per group commit, after the group's
allowance rows and in key order, so stock is checked correctly under several API processes without a
row updated per redemption.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    update,
)

from quota import ledger_pg as pg
from quota.dialect import is_pg
from quota.ledger_repository import JOURNAL
from quota.models import StockDelivery

DELIVERIES = cast(Table, StockDelivery.__table__)
STOCK_META = MetaData()
POINT_STOCK = Table(
    "point_stock",
    STOCK_META,
    Column("point_code", String(32), primary_key=True),
    Column("product_code", String(32), primary_key=True),
    Column("delivered_qty", BigInteger, nullable=False),
    Column("dispensed_qty", BigInteger, nullable=False),
)
# Point stock ------------------------------------------------------------------------------------
def lock_stock(conn: Connection, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Balance (delivered − dispensed) of the tracked (point, product) pairs, locked in key order.

    Locked after the allowances, in key order, by every writer: one lock per point per group, never
    one per redemption. A pair with no row has never had a delivery and is not tracked.
    """
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    if is_pg(conn):
        return {(p, q): int(b) for p, q, b in pg.lock_stock(conn, wanted)}
    s = POINT_STOCK
    query = (
        select(s.c.point_code, s.c.product_code, s.c.delivered_qty - s.c.dispensed_qty)
        .where(tuple_(s.c.point_code, s.c.product_code).in_(wanted))
        .order_by(s.c.point_code, s.c.product_code)
    )
    if is_pg(conn):
        query = query.with_for_update()
    return {(p, q): int(b) for p, q, b in conn.execute(query)}


def add_dispensed(conn: Connection, dispensed: Mapping[tuple[str, str], int]) -> None:
    rows = [{"_p": p, "_q": q, "_d": d} for (p, q), d in sorted(dispensed.items()) if d]
    if rows and is_pg(conn):
        pg.add_dispensed(conn, [(p, q, d) for (p, q), d in sorted(dispensed.items()) if d])
    elif rows:
        s = POINT_STOCK
        conn.execute(
            update(s)
            .where(s.c.point_code == bindparam("_p"), s.c.product_code == bindparam("_q"))
            .values(dispensed_qty=s.c.dispensed_qty + bindparam("_d")),
            rows,
        )


def record_delivery(
    conn: Connection, point_code: str, product_code: str, quantity_qty: int, at: datetime, reference: str
) -> None:
    """A delivery; the first one starts tracking the pair, counting what the journal already shows."""
    conn.execute(
        insert(DELIVERIES),
        [{"point_code": point_code, "product_code": product_code, "quantity_qty": quantity_qty,
          "delivered_at": at, "reference": reference}],
    )
    s = POINT_STOCK
    exists = conn.execute(
        select(s.c.point_code).where(s.c.point_code == point_code, s.c.product_code == product_code)
    ).first()
    if exists is None:
        dispensed = journal_dispensed(conn, point_code, product_code)
        conn.execute(insert(s), [{"point_code": point_code, "product_code": product_code,
                                  "delivered_qty": 0, "dispensed_qty": dispensed}])
    conn.execute(
        update(s)
        .where(s.c.point_code == point_code, s.c.product_code == product_code)
        .values(delivered_qty=s.c.delivered_qty + quantity_qty)
    )


def journal_dispensed(conn: Connection, point_code: str, product_code: str) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(JOURNAL.c.quantity_qty), 0)).where(
            JOURNAL.c.point_code == point_code,
            JOURNAL.c.product_code == product_code,
            JOURNAL.c.result == "ok",
            JOURNAL.c.kind.in_(["redeem", "post", "reverse", "walk_in"]),
        )
    ).scalar_one()
    return int(total)


def stock_rows(conn: Connection, point_code: str | None) -> list[dict[str, Any]]:
    query = select(POINT_STOCK).order_by(POINT_STOCK.c.point_code, POINT_STOCK.c.product_code)
    if point_code is not None:
        query = query.where(POINT_STOCK.c.point_code == point_code)
    return [dict(r) for r in conn.execute(query).mappings()]


def daily_movements(
    conn: Connection, point_code: str, start: datetime, end: datetime
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """(day, product, qty) delivered and dispensed at a point in ``[start, end)``, for the daily report."""
    day_d = func.substr(func.cast(DELIVERIES.c.delivered_at, String), 1, 10)
    delivered = conn.execute(
        select(day_d, DELIVERIES.c.product_code, func.sum(DELIVERIES.c.quantity_qty))
        .where(DELIVERIES.c.point_code == point_code, DELIVERIES.c.delivered_at >= start,
               DELIVERIES.c.delivered_at < end)
        .group_by(day_d, DELIVERIES.c.product_code)
    ).all()
    day_j = func.substr(func.cast(JOURNAL.c.created_at, String), 1, 10)
    dispensed = conn.execute(
        select(day_j, JOURNAL.c.product_code, func.sum(JOURNAL.c.quantity_qty))
        .where(JOURNAL.c.point_code == point_code, JOURNAL.c.result == "ok",
               JOURNAL.c.kind.in_(["redeem", "post", "reverse", "walk_in"]),
               JOURNAL.c.created_at >= start, JOURNAL.c.created_at < end)
        .group_by(day_j, JOURNAL.c.product_code)
    ).all()
    return ([(str(d), str(p), int(q)) for d, p, q in delivered],
            [(str(d), str(p), int(q)) for d, p, q in dispensed])


