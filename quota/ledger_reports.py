"""Read side of the ledger: a card's quota, a family's draw history, point stock and deliveries.

Nothing here is on the hot path; each function is one short read (or, for a delivery, one write).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine

from quota import ledger_repository as repo
from quota import stock_repository as stock_repo
from quota.domain.decide import ceiling_qty, current_window, is_current
from quota.domain.terms import PeriodKind
from quota.redemption import TermsSource, candidate_keys


@dataclass(frozen=True, slots=True)
class QuotaLine:
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


def quota_for_card(db: Engine, terms_for: TermsSource, serial: str, now: datetime) -> list[QuotaLine] | None:
    """What a card may still draw, per product, with the period end; None for an unknown card."""
    with db.connect() as conn:
        card = repo.find_cards(conn, [serial]).get(serial)
        if card is None:
            return None
        lines: list[QuotaLine] = []
        holders = {(k[0], k[1]) for k in candidate_keys(card, "")}
        for holder_type, holder_id in sorted(holders):
            latest: dict[str, Any] = {}
            for state in repo.allowances_of_holder(conn, holder_type, holder_id):
                if state.period_start <= now:
                    latest[state.product_code] = state
            for product, state in sorted(latest.items()):
                terms = terms_for(conn, state.rule_version_id)
                if not is_current(state, terms, now):
                    continue
                window = current_window(state, terms, now)
                gap = terms.min_gap_s
                next_at = (window.last_redeemed_at + timedelta(seconds=gap)
                           if gap and window.last_redeemed_at else None)
                available = max(ceiling_qty(window, terms, now) - window.used_qty - window.held_qty, 0)
                end = window.period_end if terms.period_kind is not PeriodKind.ROLLING else state.period_end
                lines.append(QuotaLine(product, holder_type, holder_id, window.granted_qty, window.used_qty,
                                       window.held_qty, window.remaining_qty, available, end,
                                       next_at if next_at and next_at > now else None,
                                       window.home_point_code))
        return lines


def family_draws(db: Engine, family_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """Partial draw: which card (and whose) drew what, where and when from the family's allowances."""
    with db.connect() as conn:
        return repo.family_draws(conn, family_id, limit)


def deliver_stock(db: Engine, point_code: str, product_code: str, quantity_qty: int, reference: str,
                  now: datetime) -> int:
    """Record a delivery; returns the point's new balance for the product."""
    with db.begin() as conn:
        repo.begin_write(conn)
        stock_repo.record_delivery(conn, point_code, product_code, quantity_qty, now, reference)
        return stock_repo.lock_stock(conn, [(point_code, product_code)])[(point_code, product_code)]


def stock_report(db: Engine, point_code: str | None, day_from: date, day_to: date) -> dict[str, Any]:
    """Balances now, and per day delivered / dispensed, with the reconciliation of the running row
    against the journal (invariant 2: dispensed stock equals the sum of the point's redemptions)."""
    start = datetime.combine(day_from, time(0), tzinfo=UTC)
    end = datetime.combine(day_to + timedelta(days=1), time(0), tzinfo=UTC)
    with db.connect() as conn:
        rows = stock_repo.stock_rows(conn, point_code)
        balances = []
        for r in rows:
            journal = stock_repo.journal_dispensed(conn, r["point_code"], r["product_code"])
            balances.append({**r, "balance_qty": r["delivered_qty"] - r["dispensed_qty"],
                             "journal_dispensed_qty": journal,
                             "reconciled": journal == r["dispensed_qty"]})
        days: list[dict[str, Any]] = []
        if point_code is not None:
            delivered, dispensed = stock_repo.daily_movements(conn, point_code, start, end)
            merged: dict[tuple[str, str], dict[str, Any]] = {}
            for day, product, qty in delivered:
                merged.setdefault((day, product), {"day": day, "product_code": product, "delivered_qty": 0,
                                                   "dispensed_qty": 0})["delivered_qty"] = qty
            for day, product, qty in dispensed:
                merged.setdefault((day, product), {"day": day, "product_code": product, "delivered_qty": 0,
                                                   "dispensed_qty": 0})["dispensed_qty"] = qty
            days = [merged[k] for k in sorted(merged)]
        return {"balances": balances, "days": days}
