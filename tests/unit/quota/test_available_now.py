"""Property: the quota's "available now" (``ledger_reports.available_now``) is exactly the largest
quantity ``decide_redeem`` grants at that moment, whatever the rule's fill cap, gap, binding, batches or
rolling window and the row's used, held, last fill and home station; and the next possible time it
names is the first at which ``decide_redeem`` grants anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from quota.domain.decide import AllowanceState, available_now, decide_redeem
from quota.domain.terms import BatchRelease, PeriodKind, PriceTier, Terms

T0 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
BATCHES = (BatchRelease(0, 10), BatchRelease(10, 10, catch_up=True), BatchRelease(20, 10))


@st.composite
def cases(draw: st.DrawFn) -> tuple[AllowanceState, Terms, str | None, datetime]:
    rolling = draw(st.booleans())
    with_batches = not rolling and draw(st.booleans())
    terms = Terms(
        rule_version_id=1, product_code="p",
        period_kind=PeriodKind.ROLLING if rolling else PeriodKind.MONTH,
        tiers=(PriceTier("base", 100), PriceTier("free", 300, 10)),
        rolling_days=7 if rolling else None,
        fill_cap_qty=draw(st.none() | st.integers(1, 40)),
        min_gap_s=draw(st.none() | st.sampled_from([3600, 86_400])),
        binding_max_changes=draw(st.none() | st.just(2)),
        batches=BATCHES if with_batches else (),
    )
    base = 30 if with_batches else draw(st.integers(0, 30))
    oneoff = draw(st.integers(0, 10))
    granted = base + 10 + oneoff
    used = min(draw(st.integers(0, granted) | st.sampled_from([10, 20])), granted)  # 10, 20: batches
    held = draw(st.integers(0, granted - used))
    drawn = used > 0 or draw(st.booleans())
    last = T0 + timedelta(hours=draw(st.integers(0, 30 * 24))) if drawn else None
    now = max(last or T0, T0) + timedelta(minutes=draw(st.integers(0, 3 * 24 * 60)))
    end: datetime | None = T0 + 30 * DAY
    if rolling:
        end = draw(st.sampled_from([None, last + 7 * DAY if last else None, now + DAY, now - DAY]))
    state = AllowanceState(
        id=1, holder_type="vehicle", holder_id=1, product_code="p", rule_version_id=1, period_start=T0,
        period_end=end, base_qty=base, granted_qty=granted, used_qty=used, held_qty=held,
        topup_qty=oneoff, last_redeemed_at=last, home_point_code=draw(st.sampled_from([None, "P1", "P2"])),
    )
    return state, terms, draw(st.sampled_from([None, "P1", "P2"])), now


def _at(state: AllowanceState, point: str | None) -> str:
    return point if point is not None else (state.home_point_code or "")


@settings(max_examples=400, deadline=None)
@given(cases())
def test_available_now_is_the_most_one_redemption_is_granted(
    case: tuple[AllowanceState, Terms, str | None, datetime],
) -> None:
    state, terms, point, now = case
    qty, next_at = available_now(state, terms, point, now)
    granted = [q for q in range(0, state.granted_qty + 2)
               if q > 0 and decide_redeem(state, terms, q, _at(state, point), now).ok]
    assert qty == max(granted, default=0)
    assert granted == list(range(1, qty + 1))  # what bisection relies on
    if qty:
        assert next_at is None
    if next_at is not None:
        assert next_at > now
        assert decide_redeem(state, terms, 1, _at(state, point), next_at).ok
        just_before = max(now, next_at - timedelta(microseconds=1))
        assert not decide_redeem(state, terms, 1, _at(state, point), just_before).ok


def test_a_holder_served_by_the_first_batch_is_told_the_next_regular_one() -> None:
    """The catch-up batch (day 10) is for holders who drew nothing: a holder who drew batch 1 waits
    for day 20, and is told so."""
    terms = Terms(rule_version_id=1, product_code="p", period_kind=PeriodKind.SEASON, batches=BATCHES)
    state = AllowanceState(id=1, holder_type="family", holder_id=1, product_code="p", rule_version_id=1,
                           period_start=T0, period_end=T0 + 90 * DAY, base_qty=30, granted_qty=30,
                           used_qty=10, last_redeemed_at=T0 + DAY)
    assert available_now(state, terms, None, T0 + 12 * DAY) == (0, T0 + 20 * DAY)
    assert available_now(state, terms, None, T0 + 20 * DAY) == (10, None)
    assert available_now(state._replace(used_qty=0), terms, None, T0 + 12 * DAY) == (20, None)
    # a period that ends before the next batch names no date: the next period is another allowance
    assert available_now(state._replace(period_end=T0 + 15 * DAY), terms, None, T0 + 12 * DAY) == (0, None)


def test_a_spaced_fill_is_capped_and_then_waits_for_the_gap() -> None:
    terms = Terms(rule_version_id=1, product_code="p", period_kind=PeriodKind.MONTH, fill_cap_qty=50,
                  min_gap_s=86_400, binding_max_changes=2)
    state = AllowanceState(id=1, holder_type="vehicle", holder_id=4, product_code="p", rule_version_id=1,
                           period_start=T0, period_end=T0 + 30 * DAY, base_qty=800, granted_qty=800)
    assert available_now(state, terms, None, T0) == (50, None)
    filled = state._replace(used_qty=50, last_redeemed_at=T0 + DAY, home_point_code="P1")
    assert available_now(filled, terms, "P1", T0 + DAY) == (0, T0 + 2 * DAY)
    assert available_now(filled, terms, None, T0 + 2 * DAY) == (50, None)
    assert available_now(filled, terms, "P2", T0 + 2 * DAY) == (0, None)  # tied to P1
    assert available_now(filled._replace(held_qty=10), terms, None, T0 + 3 * DAY) == (0, None)  # pump runs


def test_a_used_up_rolling_window_names_the_day_it_ends() -> None:
    """A cylinder every 23 days, drawn on the 1st: nothing until the window ends, and the holder is told
    when (before, no date was given)."""
    terms = Terms(rule_version_id=1, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23,
                  tiers=(PriceTier("base", 100),))
    state = AllowanceState(id=1, holder_type="family", holder_id=1, product_code="gas", rule_version_id=1,
                           period_start=T0, period_end=T0 + 23 * DAY, base_qty=1, granted_qty=1, used_qty=1,
                           last_redeemed_at=T0)
    assert available_now(state, terms, None, T0 + 5 * DAY) == (0, T0 + 23 * DAY)
    assert available_now(state, terms, None, T0 + 23 * DAY) == (1, None)
    pump = state._replace(used_qty=0, held_qty=1)  # a pump holds the window's cylinder: no date either
    assert available_now(pump, terms, None, T0 + 5 * DAY) == (0, None)
