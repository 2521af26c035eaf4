"""Point stock: whether a delivery may be recorded, and the daily balances of the stock report.

Plain Python: the repository feeds it rows. A point's stock of a product is tracked from its first
delivery; its balance at any instant is what was delivered before it minus what the journal shows
dispensed before it (redemptions, hold posts, walk-in sales, less reversals) — the same sum the running
``point_stock`` row keeps, which the report reconciles against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

BEFORE = "before"
"""Bucket of the movements before the report's first day (they make its opening balance)."""
AFTER = "after"
"""Bucket of the movements after its last day (they count only in the reconciliation)."""

Pair = tuple[str, str]
"""(point_code, product_code)"""


class DeliveryResult(StrEnum):
    OK = "ok"
    POINT_UNKNOWN = "point_unknown"
    POINT_INACTIVE = "point_inactive"
    PRODUCT_UNKNOWN = "product_unknown"
    PRODUCT_NOT_SERVED = "product_not_served"
    EXISTS_WITH_DIFFERENT_PAYLOAD = "exists_with_different_payload"


@dataclass(frozen=True, slots=True)
class PointProducts:
    """A point as a delivery needs it: whether it is open, and what it serves."""

    active: bool
    products: frozenset[str]


def check_delivery(point: PointProducts | None, product_known: bool, product_code: str) -> DeliveryResult:
    """A delivery goes to an open point that serves a known product; anything else is refused by name
    (an unchecked delivery would start tracking stock nobody can draw)."""
    if point is None:
        return DeliveryResult.POINT_UNKNOWN
    if not point.active:
        return DeliveryResult.POINT_INACTIVE
    if not product_known:
        return DeliveryResult.PRODUCT_UNKNOWN
    if product_code not in point.products:
        return DeliveryResult.PRODUCT_NOT_SERVED
    return DeliveryResult.OK


@dataclass(frozen=True, slots=True)
class DeliveryPayload:
    """What a delivery id stands for: a retry must carry the same."""

    point_code: str
    product_code: str
    quantity_qty: int
    reference: str


def daily_balances(
    tracked: Iterable[Mapping[str, Any]],
    delivered: Mapping[tuple[str, str, str], int],
    dispensed: Mapping[tuple[str, str, str], int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The report's ``balances`` (one per tracked pair) and ``days`` (one per pair and day with a movement).

    ``tracked`` are the running rows (point_code, product_code, delivered_qty, dispensed_qty);
    ``delivered`` and ``dispensed`` are sums by (point, product, bucket), the bucket a day
    ``YYYY-MM-DD`` of the report, ``BEFORE`` or ``AFTER``. Per day, closing = opening + delivered −
    dispensed, and a day's opening is the previous movement day's closing (the first one's is what
    happened before the report's first day). A pair not tracked (no delivery ever) has its days with
    ``opening_qty``/``closing_qty`` None: its stock is not counted.
    """
    running = {(str(r["point_code"]), str(r["product_code"])): r for r in tracked}
    totals: dict[Pair, dict[str, int]] = {}
    moves: dict[tuple[str, str, str], list[int]] = {}
    for index, source in enumerate((delivered, dispensed)):
        for (point, product, bucket), qty in source.items():
            sums = totals.setdefault((point, product), {"delivered": 0, "dispensed": 0, "opening": 0})
            sums["delivered" if index == 0 else "dispensed"] += qty
            if bucket == BEFORE:
                sums["opening"] += qty if index == 0 else -qty
            elif bucket != AFTER:
                moves.setdefault((point, product, bucket), [0, 0])[index] += qty

    balance = {pair: totals.get(pair, {}).get("opening", 0) for pair in running}
    opening = dict(balance)
    days: list[dict[str, Any]] = []
    for (point, product, day), (in_qty, out_qty) in sorted(moves.items()):
        pair = (point, product)
        row: dict[str, Any] = {"day": day, "point_code": point, "product_code": product, "tracked": False,
                               "opening_qty": None, "delivered_qty": in_qty, "dispensed_qty": out_qty,
                               "closing_qty": None}
        if pair in balance:
            row.update(tracked=True, opening_qty=balance[pair], closing_qty=balance[pair] + in_qty - out_qty)
            balance[pair] = row["closing_qty"]
        days.append(row)
    days.sort(key=lambda d: (d["day"], d["point_code"], d["product_code"]))

    balances: list[dict[str, Any]] = []
    for pair, r in sorted(running.items()):
        sums = totals.get(pair, {"delivered": 0, "dispensed": 0})
        delivered_qty, dispensed_qty = int(r["delivered_qty"]), int(r["dispensed_qty"])
        balances.append({
            "point_code": pair[0], "product_code": pair[1],
            "delivered_qty": delivered_qty, "dispensed_qty": dispensed_qty,
            "balance_qty": delivered_qty - dispensed_qty,
            "opening_qty": opening[pair], "closing_qty": balance[pair],
            "journal_dispensed_qty": sums["dispensed"], "recorded_delivered_qty": sums["delivered"],
            "reconciled": sums["dispensed"] == dispensed_qty and sums["delivered"] == delivered_qty,
            "overdrawn": delivered_qty < dispensed_qty,
        })
    return balances, days
