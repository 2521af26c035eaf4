"""SQL of walk-in sales: products' walk-in terms, daily caps, the running day row, and the report.

Functions take an open ``Connection`` inside the caller's transaction and never commit. The day row
(migration 0005) is created on first sale and locked for the rest of the sale, so two processes
selling at one point never both pass the cap.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from quota.dialect import is_pg
from quota.domain.walkin import WalkInProduct
from quota.ledger_repository import JOURNAL, entry_row
from quota.models import Product

PRODUCTS = cast(Table, Product.__table__)
WALK_IN_META = MetaData()
WALK_IN_CAPS = Table(
    "walk_in_caps",
    WALK_IN_META,
    Column("product_code", String(32), primary_key=True),
    Column("point_code", String(32), primary_key=True),
    Column("daily_cap_qty", BigInteger, nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
WALK_IN_DAYS = Table(
    "walk_in_days",
    WALK_IN_META,
    Column("point_code", String(32), primary_key=True),
    Column("product_code", String(32), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("sold_qty", BigInteger, nullable=False),
    Column("sales", Integer, nullable=False),
    Column("price_minor", BigInteger, nullable=False),
)
EVERY_POINT = ""


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql.insert if is_pg(conn) else sqlite.insert)(table)


def product(conn: Connection, code: str) -> WalkInProduct | None:
    p = PRODUCTS
    row = conn.execute(
        select(p.c.code, p.c.walk_in, p.c.free_price_minor, p.c.price_per_qty, p.c.active)
        .where(p.c.code == code)
    ).first()
    if row is None or not row.active:
        return None
    return WalkInProduct(str(row.code), bool(row.walk_in), int(row.free_price_minor), int(row.price_per_qty))


def cap_for(conn: Connection, product_code: str, point_code: str) -> int | None:
    """The point's own cap for the product, else the product's cap for every point, else None."""
    c = WALK_IN_CAPS
    rows = {str(point): int(cap) for point, cap in conn.execute(
        select(c.c.point_code, c.c.daily_cap_qty)
        .where(c.c.product_code == product_code, c.c.point_code.in_([point_code, EVERY_POINT]))
    )}
    found = rows.get(point_code, rows.get(EVERY_POINT))
    return None if found is None else int(found)


def set_cap(conn: Connection, product_code: str, point_code: str, daily_cap_qty: int, actor: str,
            at: datetime) -> None:
    values = {"product_code": product_code, "point_code": point_code, "daily_cap_qty": daily_cap_qty,
              "updated_by": actor, "updated_at": at}
    stmt = _insert(conn, WALK_IN_CAPS).values(values)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["product_code", "point_code"],
        set_={"daily_cap_qty": daily_cap_qty, "updated_by": actor, "updated_at": at},
    ))


def lock_day(conn: Connection, point_code: str, product_code: str, day: date) -> int:
    """What the point already sold of the product that day, with the day row locked until commit."""
    d = WALK_IN_DAYS
    key = {"point_code": point_code, "product_code": product_code, "day": day}
    conn.execute(_insert(conn, d).values(sold_qty=0, sales=0, price_minor=0, **key).on_conflict_do_nothing())
    query = select(d.c.sold_qty).where(d.c.point_code == point_code, d.c.product_code == product_code,
                                       d.c.day == day)
    if is_pg(conn):
        query = query.with_for_update()
    return int(conn.execute(query).scalar_one())


def add_sale(conn: Connection, point_code: str, product_code: str, day: date, quantity_qty: int,
             price_minor: int) -> None:
    d = WALK_IN_DAYS
    conn.execute(
        update(d)
        .where(d.c.point_code == point_code, d.c.product_code == product_code, d.c.day == day)
        .values(sold_qty=d.c.sold_qty + quantity_qty, sales=d.c.sales + 1,
                price_minor=d.c.price_minor + price_minor)
    )


def day_rows(conn: Connection, point_code: str | None, day_from: date, day_to: date) -> list[dict[str, Any]]:
    """The day rows with at least one sale in ``[day_from, day_to]``, by day, point and product."""
    d = WALK_IN_DAYS
    query = (
        select(d.c.day, d.c.point_code, d.c.product_code, d.c.sold_qty, d.c.sales, d.c.price_minor)
        .where(d.c.day >= day_from, d.c.day <= day_to, d.c.sales > 0)
        .order_by(d.c.day, d.c.point_code, d.c.product_code)
    )
    if point_code is not None:
        query = query.where(d.c.point_code == point_code)
    return [dict(r) for r in conn.execute(query).mappings()]


def caps(conn: Connection) -> dict[tuple[str, str], int]:
    """Every configured cap by (product, point); point ``''`` is the product's cap at every point."""
    c = WALK_IN_CAPS
    return {(str(p), str(q)): int(v)
            for p, q, v in conn.execute(select(c.c.product_code, c.c.point_code, c.c.daily_cap_qty))}


def sales(conn: Connection, point_code: str | None, start: datetime, end: datetime,
          limit: int) -> list[dict[str, Any]]:
    """The served walk-in sales in ``[start, end)``, oldest first, at most ``limit``."""
    j = JOURNAL
    query = (
        select(j.c.entry_id, j.c.point_code, j.c.product_code, j.c.quantity_qty, j.c.price_minor,
               j.c.actor, j.c.created_at)
        .where(j.c.kind == "walk_in", j.c.result == "ok", j.c.created_at >= start, j.c.created_at < end)
        .order_by(j.c.seq)
        .limit(limit)
    )
    if point_code is not None:
        query = query.where(j.c.point_code == point_code)
    return [entry_row(r) for r in conn.execute(query).mappings()]
