"""Which rolling allowance serves a redemption: a renewal that grants nothing does not (issue 3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from quota.domain.decide import AllowanceState, is_current
from quota.domain.terms import PeriodKind, PriceTier, Terms

T0 = datetime(2026, 11, 1, tzinfo=UTC)
GAS = Terms(rule_version_id=2, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23,
            price_per_qty=1, tiers=(PriceTier("subsidised", 11500),))


def row(**kw: object) -> AllowanceState:
    base = AllowanceState(id=1, holder_type="family", holder_id=7, product_code="gas", rule_version_id=2,
                          period_start=T0, period_end=None, base_qty=1, granted_qty=1)
    return base._replace(**kw)  # type: ignore[arg-type]


def test_a_rolling_row_serves_whether_its_window_runs_has_ended_or_has_not_begun() -> None:
    later = T0 + timedelta(days=60)
    assert is_current(row(), GAS, later)
    assert is_current(row(period_end=T0 + timedelta(days=23), used_qty=1), GAS, later)
    assert not is_current(row(), GAS, T0 - timedelta(seconds=1))  # a renewal not begun yet


def test_a_rolling_row_that_grants_nothing_serves_nobody_unless_it_still_holds_or_was_drawn_from() -> None:
    later = T0 + timedelta(days=1)
    assert not is_current(row(base_qty=0, granted_qty=0), GAS, later)
    assert is_current(row(base_qty=0, granted_qty=0, held_qty=1), GAS, later)  # a hold still to settle
    assert is_current(row(base_qty=0, granted_qty=1, topup_qty=1), GAS, later)  # an administrator's top-up
