"""Walk-in sales: what a point may sell to someone without a card (issue 9 item 8).

There is no card that redeems without a holder. A person without a card buys a walk-in product at its
non-subsidised (free) price, at one point, within that point's daily cap for the product; the sale is a
journal entry of its own kind that touches no allowance. Plain Python: the service feeds it the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class WalkInResult(StrEnum):
    OK = "ok"
    PRODUCT_UNKNOWN = "product_unknown"
    NOT_A_WALK_IN_PRODUCT = "not_a_walk_in_product"
    PRODUCT_NOT_SERVED = "product_not_served"
    WALK_IN_CAP_REACHED = "walk_in_cap_reached"
    POINT_OUT_OF_STOCK = "point_out_of_stock"


@dataclass(frozen=True, slots=True)
class WalkInProduct:
    """A product as a walk-in sale needs it: whether it may be sold so, and its free price."""

    code: str
    walk_in: bool
    free_price_minor: int
    price_per_qty: int


@dataclass(frozen=True, slots=True)
class WalkInDecision:
    result: WalkInResult
    price_minor: int = 0
    sold_after_qty: int = 0

    @property
    def ok(self) -> bool:
        return self.result is WalkInResult.OK


def local_day(now: datetime, zone: ZoneInfo) -> date:
    """The point's calendar day of a sale: the cap resets at local midnight, not at UTC midnight."""
    return now.astimezone(zone).date()


def free_price_minor(product: WalkInProduct, quantity_qty: int) -> int:
    """The free price of a quantity, rounded half up in minor units (as the ledger's price tiers are)."""
    per = max(product.price_per_qty, 1)
    return (quantity_qty * product.free_price_minor * 2 + per) // (2 * per)


def decide_walk_in(
    product: WalkInProduct | None,
    served: bool,
    quantity_qty: int,
    sold_today_qty: int,
    cap_qty: int,
    stock_balance_qty: int | None,
) -> WalkInDecision:
    """One sale: refused by name, or its price and the day's total after it.

    ``cap_qty`` is the day's cap at this point: a sale that brings the day exactly to the cap is
    served; one unit more is refused. ``stock_balance_qty`` is None when the point's stock of the
    product is not tracked (no delivery recorded yet).
    """
    if product is None:
        return WalkInDecision(WalkInResult.PRODUCT_UNKNOWN)
    if not product.walk_in:
        return WalkInDecision(WalkInResult.NOT_A_WALK_IN_PRODUCT)
    if not served:
        return WalkInDecision(WalkInResult.PRODUCT_NOT_SERVED)
    if sold_today_qty + quantity_qty > cap_qty:
        return WalkInDecision(WalkInResult.WALK_IN_CAP_REACHED, sold_after_qty=sold_today_qty)
    if stock_balance_qty is not None and stock_balance_qty < quantity_qty:
        return WalkInDecision(WalkInResult.POINT_OUT_OF_STOCK, sold_after_qty=sold_today_qty)
    return WalkInDecision(WalkInResult.OK, free_price_minor(product, quantity_qty),
                          sold_today_qty + quantity_qty)
