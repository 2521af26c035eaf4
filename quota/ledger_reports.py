"""Read side of the ledger: a card's quota, a family's draw history, point stock and deliveries.

Nothing here is on the hot path; each function is one short read (or, for a delivery, one write).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from quota import ledger_repository as repo
from quota import stock_repository as stock_repo
from quota.domain.decide import available_now, current_window, is_current
from quota.domain.stock import DeliveryPayload, DeliveryResult, check_delivery, daily_balances
from quota.domain.terms import PeriodKind
from quota.redemption import TermsSource, candidate_keys

UTC_ZONE = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class QuotaLine:
    """One product of a card's quota. ``remaining_qty`` is what the period (or rolling window) has left;
    ``available_now_qty`` the most one redemption would be granted at this moment (``available_now``),
    and ``next_possible_at`` when one could be, if none can now and the ledger knows the date."""

    product_code: str
    holder_type: str
    holder_id: int
    granted_qty: int
    used_qty: int
    held_qty: int
    remaining_qty: int
    available_now_qty: int
    period_end: datetime | None
    next_possible_at: datetime | None
    home_point_code: str | None
    card_state: str = "active"
    card_state_reason: str | None = None


def quota_for_card(
    db: Engine, terms_for: TermsSource, serial: str, now: datetime, point_code: str | None = None
) -> list[QuotaLine] | None:
    """What a card may still draw, per product, with the period end; None for an unknown card.

    ``available_now_qty`` is what one redemption at ``point_code`` (None: at the card's home station)
    would be granted now (``available_now``). A card that is not active (blocked, lost, replaced) keeps
    its lines — the holder's figures are the same for a replacement card — but every redemption with it
    is ``card_blocked``: each line says so (``card_state``, ``card_state_reason``) with nothing
    available now and no next possible time. A member's card lists, per product, the allowance the ledger
    draws from: its own when one serves, else the family's (``candidate_keys``' order), never both."""
    with db.connect() as conn:
        card = repo.find_cards(conn, [serial]).get(serial)
        if card is None:
            return None
        active = card.state == "active"
        reason = None if active else repo.card_state_reason(conn, serial)
        lines: list[QuotaLine] = []
        listed: set[str] = set()  # products an earlier candidate (the card's own allowance) serves
        for holder_type, holder_id, _ in candidate_keys(card, ""):
            latest: dict[str, Any] = {}
            for state in repo.allowances_of_holder(conn, holder_type, holder_id):
                if state.period_start <= now:
                    latest[state.product_code] = state
            for product, state in sorted(latest.items()):
                terms = terms_for(conn, state.rule_version_id)
                if product in listed or not is_current(state, terms, now):
                    continue
                listed.add(product)
                window = current_window(state, terms, now)
                available, next_at = available_now(state, terms, point_code, now) if active else (0, None)
                end = window.period_end
                if terms.period_kind is PeriodKind.ROLLING:  # ended or not begun: the next fill starts it
                    running = state.period_end is not None and state.period_end > now
                    end = state.period_end if running else None
                lines.append(QuotaLine(product, holder_type, holder_id, window.granted_qty, window.used_qty,
                                       window.held_qty, window.remaining_qty, available, end, next_at,
                                       window.home_point_code, card.state, reason))
        return lines


def family_draws(db: Engine, family_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Partial draw: which card (and whose) drew what, where and when from the family's allowances."""
    with db.connect() as conn:
        return repo.family_draws(conn, family_id, limit)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The answer to a delivery: recorded (``ok``, the balance after it), replayed, or refused by name."""

    result: DeliveryResult
    delivery_id: str
    payload: DeliveryPayload
    balance_qty: int | None = None
    delivered_at: datetime | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.result is DeliveryResult.OK


def deliver_stock(db: Engine, delivery_id: str, payload: DeliveryPayload, now: datetime) -> Delivery:
    """Record a delivery once per client-made id: a retry with the same payload replays the first answer
    (the balance as it was then); another payload under that id is refused. A refused delivery (unknown
    or closed point, unknown product, a product the point does not serve) records nothing."""
    for attempt in range(2):
        try:
            with db.begin() as conn:
                repo.begin_write(conn)
                stored = stock_repo.find_delivery(conn, delivery_id)
                if stored is not None:
                    return _replay(delivery_id, payload, stored)
                refusal = check_delivery(stock_repo.point_products(conn, payload.point_code),
                                         stock_repo.product_exists(conn, payload.product_code),
                                         payload.product_code)
                if refusal is not DeliveryResult.OK:
                    return Delivery(refusal, delivery_id, payload)
                balance = stock_repo.record_delivery(conn, delivery_id, payload, now)
                return Delivery(DeliveryResult.OK, delivery_id, payload, balance, now)
        except IntegrityError:
            # PostgreSQL: a concurrent request under the same id (or the pair's first delivery) won
            # the unique index; it has committed, so the second attempt finds it and replays.
            if attempt:
                raise
    raise AssertionError("unreachable")


def _replay(delivery_id: str, payload: DeliveryPayload, stored: dict[str, Any]) -> Delivery:
    first = DeliveryPayload(str(stored["point_code"]), str(stored["product_code"]),
                            int(stored["quantity_qty"]), str(stored["reference"]))
    if first != payload:
        return Delivery(DeliveryResult.EXISTS_WITH_DIFFERENT_PAYLOAD, delivery_id, first)
    balance = stored["balance_qty"]
    return Delivery(DeliveryResult.OK, delivery_id, first, None if balance is None else int(balance),
                    repo.utc(stored["delivered_at"]), replayed=True)


def stock_report(db: Engine, point_code: str | None, day_from: date, day_to: date,
                 zone: ZoneInfo = UTC_ZONE) -> dict[str, Any]:
    """Per point and product (one point, or all): the running balance now, the opening balance at the
    start of ``day_from`` and the closing balance at the end of ``day_to`` (days of ``zone``, the
    deployment's calendar); per day with a movement, opening, delivered, dispensed and closing; and the
    reconciliation of the running row against the deliveries and the journal (invariant 2), naming every
    pair that disagrees.

    Three statements whatever the number of points, read from one snapshot so a redemption committing
    meanwhile cannot make a pair look unreconciled.
    """
    if day_to < day_from:
        raise ValueError("day_to is before day_from")
    days = [day_from + timedelta(days=n) for n in range((day_to - day_from).days + 1)]
    with db.connect() as conn:
        stock_repo.begin_snapshot(conn)
        tracked = stock_repo.stock_rows(conn, point_code)
        delivered, dispensed = stock_repo.movements(conn, point_code, days, zone)
    balances, moves = daily_balances(tracked, delivered, dispensed)
    disagreements = [
        {k: b[k] for k in ("point_code", "product_code", "delivered_qty", "recorded_delivered_qty",
                           "dispensed_qty", "journal_dispensed_qty")}
        for b in balances if not b["reconciled"]
    ]
    return {"day_from": day_from, "day_to": day_to, "reconciled": not disagreements,
            "disagreements": disagreements, "balances": balances, "days": moves}
