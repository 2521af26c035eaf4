"""Reversals decided in plain Python: the refund is the tiers' top slice, parts until nothing is left, the
fill's gap and station given back only by the reversal that completes the latest fill, closed windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from quota.domain.decide import (
    AllowanceState,
    Result,
    ReversedDebit,
    decide_redeem,
    decide_reverse,
    price_charges,
    unserved_refund,
    window_holds,
)
from quota.domain.terms import PeriodKind, PriceTier, Terms

T0 = datetime(2026, 11, 1, tzinfo=UTC)
SUGAR = Terms(rule_version_id=1, product_code="sugar", period_kind=PeriodKind.MONTH, price_per_qty=1000,
              tiers=(PriceTier("subsidised", 350), PriceTier("free", 2000, 1000)))
DIESEL = Terms(rule_version_id=2, product_code="diesel", period_kind=PeriodKind.MONTH, price_per_qty=1000,
               tiers=(PriceTier("subsidised", 750),), min_gap_s=86_400, binding_max_changes=1)
GAS = Terms(rule_version_id=3, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23,
            tiers=(PriceTier("subsidised", 11_500),))


def sugar(**kw: object) -> AllowanceState:
    base = AllowanceState(id=1, holder_type="family", holder_id=7, product_code="sugar", rule_version_id=1,
                          period_start=T0, period_end=T0 + timedelta(days=30), base_qty=4000,
                          granted_qty=5000)
    return base._replace(**kw)  # type: ignore[arg-type]


def tier_price(state: AllowanceState, terms: Terms, used: int) -> int:
    return sum(c.price_minor for c in price_charges(state._replace(used_qty=0), terms, used))


def test_the_refund_is_the_top_slice_not_the_debits_own_price() -> None:
    d = decide_reverse(sugar(used_qty=5000), SUGAR, ReversedDebit(4000), 4000)
    assert (d.result, d.state.used_qty, d.debit_qty, d.price_minor) == (Result.OK, 1000, -4000, -3050)


def test_topped_up_quantity_widens_the_first_tier_of_the_slice_freed() -> None:
    state = sugar(used_qty=5000, granted_qty=6000, topup_qty=1000)  # first tier: 4000 + 1000
    assert decide_reverse(state, SUGAR, ReversedDebit(1000), 1000).price_minor == -350


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=30)), max_size=30))
def test_any_debits_and_partial_reversals_keep_net_money_on_the_tiers(steps: list[tuple[bool, int]]) -> None:
    state = sugar()
    debits: list[list[int]] = []  # [quantity, reversed]
    net = 0
    for n, (debit, hundreds) in enumerate(steps):
        qty = hundreds * 100  # whole tenths of a kilogram: every tier's price is exact
        if debit:
            d = decide_redeem(state, SUGAR, qty, "P1", T0 + timedelta(minutes=n))
            if d.ok:
                debits.append([qty, 0])
        elif debits:
            target = debits[n % len(debits)]
            d = decide_reverse(state, SUGAR, ReversedDebit(target[0], target[1]), qty)
            if d.ok:
                target[1] += qty
            else:
                assert d.result in (Result.EXCEEDS_REVERSIBLE, Result.ALREADY_REVERSED)
        else:
            continue
        state = d.state
        net += d.price_minor
        assert net == tier_price(state, SUGAR, state.used_qty)


def test_parts_until_nothing_is_left() -> None:
    state = sugar(used_qty=3000)
    assert decide_reverse(state, SUGAR, ReversedDebit(3000, 3000), 1).result is Result.ALREADY_REVERSED
    assert decide_reverse(state, SUGAR, ReversedDebit(3000, 1000), 2001).result is Result.EXCEEDS_REVERSIBLE
    assert decide_reverse(state, SUGAR, ReversedDebit(3000, 1000), 0).result is Result.INVALID_QUANTITY
    assert decide_reverse(state, SUGAR, ReversedDebit(3000, 1000), 2000).state.used_qty == 1000


def diesel(**kw: object) -> AllowanceState:
    base = AllowanceState(id=2, holder_type="family", holder_id=7, product_code="diesel", rule_version_id=2,
                          period_start=T0, period_end=T0 + timedelta(days=30), base_qty=200_000,
                          granted_qty=200_000, used_qty=40_000, last_redeemed_at=T0 + timedelta(days=2),
                          home_point_code="P1")
    return base._replace(**kw)  # type: ignore[arg-type]


def test_only_the_reversal_completing_the_latest_fill_gives_back_its_gap_and_station() -> None:
    earlier = T0 + timedelta(days=1)
    latest = ReversedDebit(20_000, 0, "P1", latest_fill=True, previous_fill_at=earlier)
    whole = decide_reverse(diesel(), DIESEL, latest, 20_000).state
    assert (whole.last_redeemed_at, whole.home_point_code) == (earlier, "P1")
    first = latest._replace(previous_fill_at=None, first_binding=True)
    undone = decide_reverse(diesel(used_qty=20_000), DIESEL, first, 20_000).state
    assert (undone.last_redeemed_at, undone.home_point_code) == (None, None)
    part = decide_reverse(diesel(used_qty=20_000), DIESEL, first, 5_000).state  # goods were handed over
    assert (part.last_redeemed_at, part.home_point_code) == (T0 + timedelta(days=2), "P1")
    not_latest = first._replace(latest_fill=False)
    kept = decide_reverse(diesel(used_qty=20_000), DIESEL, not_latest, 20_000).state
    assert (kept.last_redeemed_at, kept.home_point_code) == (T0 + timedelta(days=2), "P1")
    moved = decide_reverse(diesel(used_qty=20_000, home_point_code="P2"), DIESEL, first, 20_000).state
    assert moved.home_point_code == "P2"  # the card was moved since: not this fill's station any more


def test_a_rolling_window_left_empty_is_closed_again() -> None:
    opened = AllowanceState(id=3, holder_type="family", holder_id=7, product_code="gas", rule_version_id=3,
                            period_start=T0, period_end=T0 + timedelta(days=23), base_qty=1, granted_qty=1,
                            used_qty=1, last_redeemed_at=T0)
    only = ReversedDebit(1, 0, "P1", latest_fill=True)
    assert decide_reverse(opened, GAS, only, 1).state.period_end is None
    held = decide_reverse(opened._replace(granted_qty=2, held_qty=1), GAS, only, 1).state
    assert held.period_end == T0 + timedelta(days=23)  # a pump is running: the window stays open


def test_a_window_is_closed_once_its_period_ends_or_restarts() -> None:
    state = sugar()
    assert window_holds(state, T0 + timedelta(days=2), T0 + timedelta(days=29))
    assert not window_holds(state, T0 + timedelta(days=2), T0 + timedelta(days=30))
    restarted = state._replace(period_start=T0 + timedelta(days=24), period_end=None)
    assert not window_holds(restarted, T0 + timedelta(days=2), T0 + timedelta(days=25))


def test_a_closed_windows_refund_is_what_the_debit_cost_pro_rata_and_never_more() -> None:
    debit = ReversedDebit(3000)
    assert unserved_refund(1050, debit, 0, 1000) == 350
    assert unserved_refund(1050, debit._replace(reversed_qty=1000), 350, 2000) == 700
    assert unserved_refund(1000, ReversedDebit(3), 0, 1) == 333
    assert unserved_refund(1000, ReversedDebit(3, 2), 667, 1) == 333  # the last part takes the rest
    assert unserved_refund(1400, ReversedDebit(4000, 1000), 2000, 1000) == 0  # tiers refunded more already
