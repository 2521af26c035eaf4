"""SQL of point stock: deliveries, the running (point, product) row, and the movements by day.

The running row (migration 0003) is locked and updated once per group commit, after the group's
allowance rows and in key order, so stock is checked correctly under several API processes without a
row updated per redemption.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    MetaData,
    Select,
    String,
    Table,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    text,
    tuple_,
    update,
)

from quota import ledger_pg as pg
from quota.dialect import is_pg
from quota.domain.stock import AFTER, BEFORE, DeliveryPayload, PointProducts
from quota.ledger_repository import JOURNAL, pending_hold_qty
from quota.models import StockDelivery

DELIVERIES = cast(Table, StockDelivery.__table__)
DISPENSING_KINDS = ("redeem", "post", "reverse", "stock_credit", "walk_in")
"""Journal kinds that move goods out of (or, reversed, back into) a point's stock; ``stock_credit`` is
the reversal of a debit whose allowance window had closed (the stock goes back, the allowance not)."""
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


def lock_available(
    conn: Connection, pairs: Iterable[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], int]:
    """``lock_stock`` less what unexpired pending holds reserve at each pair (SQLite: one writer, so
    the rows need no lock; PostgreSQL reads them in ``ledger_pg.lock_phase``)."""
    balances = lock_stock(conn, pairs)
    return {(p, q): b - pending_hold_qty(conn, p, q, now) for (p, q), b in balances.items()}


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


def find_delivery(conn: Connection, delivery_id: str) -> dict[str, Any] | None:
    """The delivery recorded under a client-made id, if any."""
    d = DELIVERIES
    row = conn.execute(
        select(d.c.point_code, d.c.product_code, d.c.quantity_qty, d.c.reference, d.c.delivered_at,
               d.c.balance_qty).where(d.c.delivery_id == delivery_id)
    ).mappings().first()
    return None if row is None else dict(row)


def point_products(conn: Connection, point_code: str) -> PointProducts | None:
    """A point (open or closed) with the products it serves; None for an unknown code."""
    row = conn.execute(text("SELECT products, active FROM points WHERE code = :c"), {"c": point_code}).first()
    if row is None:
        return None
    listed = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return PointProducts(bool(row[1]), frozenset(listed or ()))


def product_exists(conn: Connection, product_code: str) -> bool:
    found = conn.execute(text("SELECT 1 FROM products WHERE code = :c"), {"c": product_code}).first()
    return found is not None


def record_delivery(
    conn: Connection, delivery_id: str, payload: DeliveryPayload, at: datetime
) -> int:
    """A delivery; the first one starts tracking the pair, counting what the journal already shows.

    Returns the pair's balance after it, which is stored with the delivery (a retry replays it). A
    second delivery under the same id fails on the unique index (the caller replays it).
    """
    point_code, product_code = payload.point_code, payload.product_code
    s = POINT_STOCK
    exists = conn.execute(
        select(s.c.point_code).where(s.c.point_code == point_code, s.c.product_code == product_code)
    ).first()
    if exists is None:
        if is_pg(conn):
            # Wait for every transaction that has written journal rows to end, so their rows are summed:
            # a redemption group found no stock row here and will not count its own against it. One that
            # writes after this waits for the delivery to commit, and then finds the row (its stock
            # update follows its journal insert). Only a pair's first delivery takes this lock.
            conn.execute(text("LOCK TABLE journal IN SHARE MODE"))
        dispensed = journal_dispensed(conn, point_code, product_code)
        conn.execute(insert(s), [{"point_code": point_code, "product_code": product_code,
                                  "delivered_qty": 0, "dispensed_qty": dispensed}])
    conn.execute(
        update(s)
        .where(s.c.point_code == point_code, s.c.product_code == product_code)
        .values(delivered_qty=s.c.delivered_qty + payload.quantity_qty)
    )
    balance = lock_stock(conn, [(point_code, product_code)])[(point_code, product_code)]
    conn.execute(
        insert(DELIVERIES),
        [{"point_code": point_code, "product_code": product_code, "quantity_qty": payload.quantity_qty,
          "delivered_at": at, "reference": payload.reference, "delivery_id": delivery_id,
          "balance_qty": balance}],
    )
    return balance


def journal_dispensed(conn: Connection, point_code: str, product_code: str) -> int:
    total = conn.execute(
        select(func.coalesce(func.sum(JOURNAL.c.quantity_qty), 0)).where(
            JOURNAL.c.point_code == point_code,
            JOURNAL.c.product_code == product_code,
            JOURNAL.c.result == "ok",
            JOURNAL.c.kind.in_(DISPENSING_KINDS),
        )
    ).scalar_one()
    return int(total)


def begin_snapshot(conn: Connection) -> None:
    """Make the connection's following reads one snapshot (call before its first statement)."""
    if is_pg(conn):
        conn.execution_options(isolation_level="REPEATABLE READ")
    else:
        conn.exec_driver_sql("BEGIN")


def stock_rows(conn: Connection, point_code: str | None) -> list[dict[str, Any]]:
    query = select(POINT_STOCK).order_by(POINT_STOCK.c.point_code, POINT_STOCK.c.product_code)
    if point_code is not None:
        query = query.where(POINT_STOCK.c.point_code == point_code)
    return [dict(r) for r in conn.execute(query).mappings()]


def _bucketed(conn: Connection, query: Select[Any], at: ColumnElement[datetime], qty: ColumnElement[int],
              days: Sequence[date], zone: ZoneInfo) -> dict[tuple[str, str, str], int]:
    """``query`` (selecting point_code, product_code) summed by pair and bucket: the local day
    ``YYYY-MM-DD`` (in ``zone``) of ``at`` when it is one of ``days`` (consecutive), else ``BEFORE`` or
    ``AFTER`` — one grouped statement over every point, however many there are."""
    midnights = (*days, days[-1] + timedelta(days=1))
    bounds = [datetime.combine(d, time(), zone).astimezone(UTC) for d in midnights]
    day: ColumnElement[str]
    if is_pg(conn):
        day = func.to_char(func.timezone(zone.key, at), "YYYY-MM-DD", type_=String)
    else:  # SQLite keeps UTC wall times as text and knows no zones: one test per local midnight
        day = case(*((at < bound, literal(d.isoformat())) for d, bound in zip(days, bounds[1:], strict=True)))
    bucket = case((at < bounds[0], literal(BEFORE)), (at >= bounds[-1], literal(AFTER)), else_=day)
    inner = query.add_columns(bucket.label("bucket"), qty.label("qty")).subquery()
    rows = conn.execute(
        select(inner.c.point_code, inner.c.product_code, inner.c.bucket, func.sum(inner.c.qty))
        .group_by(inner.c.point_code, inner.c.product_code, inner.c.bucket)
    )
    return {(str(p), str(q), str(b)): int(n) for p, q, b, n in rows}


def movements(
    conn: Connection, point_code: str | None, days: Sequence[date], zone: ZoneInfo
) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str, str], int]]:
    """Delivered and dispensed sums by (point, product, bucket) — see ``_bucketed`` — at one point or
    all: the report's opening balances, its days and the reconciliation's totals in two statements."""
    d, j = DELIVERIES, JOURNAL
    deliveries = select(d.c.point_code, d.c.product_code)
    journal = select(j.c.point_code, j.c.product_code).where(
        j.c.result == "ok", j.c.kind.in_(DISPENSING_KINDS), j.c.point_code.is_not(None),
        j.c.product_code.is_not(None))
    if point_code is not None:
        deliveries = deliveries.where(d.c.point_code == point_code)
        journal = journal.where(j.c.point_code == point_code)
    return (_bucketed(conn, deliveries, d.c.delivered_at, d.c.quantity_qty, days, zone),
            _bucketed(conn, journal, j.c.created_at, j.c.quantity_qty, days, zone))
