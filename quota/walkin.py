"""Walk-in sales as use cases: sell (one transaction), set a cap, and the supervisors' report.

A sale is keyed by its client-made id like a redemption: the same id and payload replays the first
answer, another payload is ``exists_with_different_payload``. Refusals are journalled (quantity 0) so
a retry replays them. A served sale is a journal entry of kind ``walk_in`` with no holder and no
allowance; it adds to the point's day row (the cap) and to the point's dispensed stock, so stock
reconciliation counts it like any debit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from quota import ledger_repository as repo
from quota import stock_repository as stock_repo
from quota import walkin_repository as walk_repo
from quota.domain.walkin import WalkInResult, decide_walk_in, local_day
from quota.redemption import Outcome, outcome_of, payload_hash, replay, utcnow

DEFAULT_ZONE = "Asia/Damascus"


@dataclass(frozen=True, slots=True)
class WalkInDay:
    """One point's walk-in sales of one product on one local day, against that day's cap."""

    day: date
    point_code: str
    product_code: str
    sales: int
    sold_qty: int
    price_minor: int
    cap_qty: int


@dataclass(slots=True)
class WalkInReport:
    days: list[WalkInDay] = field(default_factory=list)
    sales: list[dict[str, Any]] = field(default_factory=list)


class WalkInService:
    def __init__(self, db: Engine, *, default_cap_qty: int, zone: str = DEFAULT_ZONE,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.default_cap_qty = default_cap_qty
        self.zone = ZoneInfo(zone)
        self.clock = clock

    def sell(self, entry_id: str, product_code: str, quantity_qty: int, point_code: str, actor: str,
             now: datetime | None = None) -> Outcome:
        """Sell to someone without a card at the free price; ``remaining_qty`` is what is left of the
        point's cap for the day."""
        now = now or self.clock()
        request_hash = payload_hash("walk_in", product=product_code, qty=quantity_qty, point=point_code)
        with self.db.begin() as conn:
            repo.begin_write(conn)
            stored = repo.find_entries(conn, [entry_id]).get(entry_id)
            if stored is not None:
                return replay(stored, request_hash, entry_id)
            product = walk_repo.product(conn, product_code)
            served = product_code in repo.find_points(conn, [point_code]).get(point_code, frozenset())
            day = local_day(now, self.zone)
            pair = (point_code, product_code)
            cap, sold, balance = self.default_cap_qty, 0, None
            if product is not None and product.walk_in and served:
                found_cap = walk_repo.cap_for(conn, product_code, point_code)
                cap = self.default_cap_qty if found_cap is None else found_cap
                sold = walk_repo.lock_day(conn, point_code, product_code, day)  # then stock: lock order
                balance = stock_repo.lock_available(conn, [pair], now).get(pair)  # less what pumps hold
            decision = decide_walk_in(product, served, quantity_qty, sold, cap, balance)
            row: dict[str, Any] = {
                "entry_id": entry_id, "kind": "walk_in", "result": decision.result.value,
                "allowance_id": None, "holder_type": None, "holder_id": None, "product_code": product_code,
                "point_code": point_code, "card_serial": None,
                "quantity_qty": quantity_qty if decision.ok else 0, "price_minor": decision.price_minor,
                "remaining_qty": max(cap - decision.sold_after_qty, 0) if product and served else None,
                "payload_hash": request_hash, "ref_entry_id": None, "actor": actor, "reason": None,
                "created_at": now,
            }
            if decision.ok:
                walk_repo.add_sale(conn, point_code, product_code, day, quantity_qty, decision.price_minor)
                if balance is not None:
                    stock_repo.add_dispensed(conn, {pair: quantity_qty})
            repo.insert_entries(conn, [row])
            return outcome_of(row, replayed=False)

    def set_cap(self, product_code: str, daily_cap_qty: int, actor: str, point_code: str | None = None,
                now: datetime | None = None) -> WalkInResult:
        """A product's daily cap at every point, or (with ``point_code``) at one point; refused (and
        nothing stored) for an unknown product or one that is not sold walk-in."""
        with self.db.begin() as conn:
            repo.begin_write(conn)
            product = walk_repo.product(conn, product_code)
            if product is None:
                return WalkInResult.PRODUCT_UNKNOWN
            if not product.walk_in:
                return WalkInResult.NOT_A_WALK_IN_PRODUCT
            walk_repo.set_cap(conn, product_code, point_code or walk_repo.EVERY_POINT, daily_cap_qty, actor,
                              now or self.clock())
        return WalkInResult.OK

    def report(self, point_code: str | None, day_from: date, day_to: date, limit: int = 1000) -> WalkInReport:
        """Per local day, point and product: sales, quantity, takings and cap; then the sales themselves."""
        start = datetime.combine(day_from, time(), self.zone)
        end = datetime.combine(day_to + timedelta(days=1), time(), self.zone)
        with self.db.connect() as conn:
            caps = walk_repo.caps(conn)
            rows = walk_repo.day_rows(conn, point_code, day_from, day_to)
            sales = walk_repo.sales(conn, point_code, start, end, limit)
        report = WalkInReport(sales=sales)
        for r in rows:
            product, point = str(r["product_code"]), str(r["point_code"])
            cap = caps.get((product, point), caps.get((product, walk_repo.EVERY_POINT), self.default_cap_qty))
            report.days.append(WalkInDay(r["day"], point, product, int(r["sales"]), int(r["sold_qty"]),
                                         int(r["price_minor"]), cap))
        return report
