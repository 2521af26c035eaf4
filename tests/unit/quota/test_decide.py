"""Each refusal of the decision at its boundary, and what a successful debit writes back."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from quota.domain.decide import (
    AllowanceState,
    Result,
    ReversedDebit,
    decide_hold,
    decide_post,
    decide_rebind,
    decide_redeem,
    decide_release,
    decide_reverse,
    decide_topup,
    is_current,
)
from quota.domain.terms import BatchRelease, PeriodKind, PriceTier, Terms

T0 = datetime(2026, 11, 1, tzinfo=UTC)
MONTH = Terms(rule_version_id=1, product_code="sugar", period_kind=PeriodKind.MONTH, price_per_qty=1000,
              tiers=(PriceTier("subsidised", 350), PriceTier("free", 2000, 1000)))


def state(**kw: object) -> AllowanceState:
    base = AllowanceState(id=1, holder_type="family", holder_id=7, product_code="sugar", rule_version_id=1,
                          period_start=T0, period_end=T0 + timedelta(days=30), base_qty=4000,
                          granted_qty=5000)
    return base._replace(**kw)  # type: ignore[arg-type]


def test_debit_exactly_to_the_grant_is_ok_and_one_more_is_refused() -> None:
    d = decide_redeem(state(used_qty=4000), MONTH, 1000, "P1", T0)
    assert d.result is Result.OK and d.remaining_qty == 0 and d.state.used_qty == 5000
    refused = decide_redeem(state(used_qty=4000), MONTH, 1001, "P1", T0)
    assert refused.result is Result.EXCEEDS_ALLOWANCE and refused.state.used_qty == 4000


def test_held_quantity_counts_against_the_grant() -> None:
    assert decide_redeem(state(held_qty=4500), MONTH, 501, "P1", T0).result is Result.EXCEEDS_ALLOWANCE
    assert decide_redeem(state(held_qty=4500), MONTH, 500, "P1", T0).ok


def test_price_is_split_across_tiers() -> None:
    d = decide_redeem(state(used_qty=3500), MONTH, 1000, "P1", T0)
    assert [(c.tier, c.qty, c.price_minor) for c in d.charges] == [("subsidised", 500, 175),
                                                                   ("free", 500, 1000)]
    assert d.price_minor == 1175


def test_each_tier_is_priced_to_the_nearest_minor_unit_half_up() -> None:
    # 350 per 1000 g: 1 g is 0.35 -> 0, 2 g is 0.7 -> 1, 10 g is exactly 3.5 -> 4
    assert [decide_redeem(state(), MONTH, qty, "P1", T0).price_minor for qty in (1, 2, 10)] == [0, 1, 4]
    # 3 g across the tiers: 2 g subsidised (0.7 -> 1) and 1 g free (2.0 -> 2)
    d = decide_redeem(state(used_qty=3998), MONTH, 3, "P1", T0)
    assert [(c.tier, c.qty, c.price_minor) for c in d.charges] == [("subsidised", 2, 1), ("free", 1, 2)]
    assert d.price_minor == 3
    # each tier is rounded on its own, not the total: 0.35 -> 0 and 1.15 -> 1 is 1, where 1.5 would be 2
    odd = replace(MONTH, tiers=(PriceTier("subsidised", 350), PriceTier("free", 1150, 1000)))
    d = decide_redeem(state(used_qty=3999), odd, 2, "P1", T0)
    assert [(c.tier, c.qty, c.price_minor) for c in d.charges] == [("subsidised", 1, 0), ("free", 1, 1)]
    assert d.price_minor == 1


def test_topup_extends_the_subsidised_tier_and_the_grant() -> None:
    d = decide_topup(state(), MONTH, 2000, T0, cap_qty=40_000)
    assert d.state.granted_qty == 7000 and d.state.topup_qty == 2000
    charged = decide_redeem(d.state, MONTH, 6000, "P1", T0)
    assert charged.charges[0].qty == 6000 and charged.charges[0].tier == "subsidised"


def test_topup_cap_is_a_boundary() -> None:
    assert decide_topup(state(topup_qty=30_000), MONTH, 10_000, T0, cap_qty=40_000).ok
    assert decide_topup(state(topup_qty=30_000), MONTH, 10_001, T0, cap_qty=40_000).result \
        is Result.EXCEEDS_ALLOWANCE


def test_fill_cap_exactly_at_the_cap_is_ok() -> None:
    terms = replace(MONTH, fill_cap_qty=1000)
    assert decide_redeem(state(), terms, 1000, "P1", T0).ok
    assert decide_redeem(state(), terms, 1001, "P1", T0).result is Result.EXCEEDS_FILL_CAP


def test_minimum_gap_one_millisecond_before_it_ends_is_too_soon() -> None:
    terms = replace(MONTH, min_gap_s=86_400)
    last = T0 + timedelta(hours=1)
    possible = last + timedelta(days=1)
    early = decide_redeem(state(last_redeemed_at=last), terms, 10, "P1", possible - timedelta(milliseconds=1))
    assert early.result is Result.TOO_SOON and early.possible_at == possible
    assert decide_redeem(state(last_redeemed_at=last), terms, 10, "P1", possible).ok


def test_binding_sets_home_point_on_first_redemption_then_refuses_elsewhere() -> None:
    terms = replace(MONTH, binding_max_changes=1)
    first = decide_redeem(state(), terms, 10, "P1", T0)
    assert first.state.home_point_code == "P1"
    assert decide_redeem(first.state, terms, 10, "P2", T0).result is Result.POINT_NOT_BOUND
    assert decide_redeem(first.state, terms, 10, "P1", T0).ok


def test_without_binding_any_point_serves() -> None:
    first = decide_redeem(state(), MONTH, 10, "P1", T0)
    assert first.state.home_point_code is None
    assert decide_redeem(first.state, MONTH, 10, "P2", T0).ok


def test_binding_changes_are_counted_up_to_the_limit() -> None:
    terms = replace(MONTH, binding_max_changes=1)
    moved = decide_rebind(state(home_point_code="P1"), terms, "P2", T0)
    assert moved.ok and moved.state.binding_changes == 1
    assert decide_rebind(moved.state, terms, "P3", T0).result is Result.BINDING_CHANGES_EXHAUSTED


def test_rolling_window_starts_at_first_redemption_and_restarts_after_it_ends() -> None:
    terms = Terms(rule_version_id=2, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23)
    row = state(product_code="gas", period_end=None, base_qty=1, granted_qty=1)
    at = T0 + timedelta(days=3)
    first = decide_redeem(row, terms, 1, "P1", at)
    assert first.ok and first.state.period_start == at and first.state.period_end == at + timedelta(days=23)
    before_end = at + timedelta(days=23) - timedelta(milliseconds=1)
    assert decide_redeem(first.state, terms, 1, "P1", before_end).result is Result.EXCEEDS_ALLOWANCE
    again = decide_redeem(first.state, terms, 1, "P1", at + timedelta(days=23))
    assert again.ok and again.state.used_qty == 1 and again.state.period_start == at + timedelta(days=23)
    assert is_current(first.state, terms, at + timedelta(days=400))


def test_calendar_row_is_not_current_after_its_end() -> None:
    assert is_current(state(), MONTH, T0 + timedelta(days=29))
    assert not is_current(state(), MONTH, T0 + timedelta(days=30))


def test_batches_release_on_their_dates_and_a_missed_batch_stays_drawable() -> None:
    terms = Terms(rule_version_id=3, product_code="diesel", period_kind=PeriodKind.SEASON,
                  batches=(BatchRelease(0, 100_000), BatchRelease(60, 100_000),
                           BatchRelease(120, 0, catch_up=True)))
    row = state(product_code="diesel", period_end=T0 + timedelta(days=180), base_qty=200_000,
                granted_qty=200_000)
    assert decide_redeem(row, terms, 100_000, "P1", T0).ok
    assert decide_redeem(row, terms, 100_001, "P1", T0).result is Result.EXCEEDS_ALLOWANCE
    day60 = T0 + timedelta(days=60)
    assert decide_redeem(row, terms, 100_001, "P1", day60 - timedelta(milliseconds=1)).result \
        is Result.EXCEEDS_ALLOWANCE
    assert decide_redeem(row, terms, 200_000, "P1", day60).ok


def test_catch_up_batch_opens_early_only_to_holders_who_drew_nothing() -> None:
    terms = Terms(rule_version_id=3, product_code="diesel", period_kind=PeriodKind.SEASON,
                  batches=(BatchRelease(0, 100_000), BatchRelease(30, 100_000, catch_up=True),
                           BatchRelease(60, 100_000)))
    row = state(product_code="diesel", period_end=T0 + timedelta(days=180), base_qty=200_000,
                granted_qty=200_000)
    day30 = T0 + timedelta(days=30)
    assert decide_redeem(row, terms, 200_000, "P1", day30).ok
    served = row._replace(used_qty=100_000)
    assert decide_redeem(served, terms, 1, "P1", day30).result is Result.EXCEEDS_ALLOWANCE


def test_hold_reserves_then_post_less_returns_the_rest() -> None:
    held = decide_hold(state(), MONTH, 3000, "P1", T0)
    assert held.ok and held.state.held_qty == 3000 and held.state.used_qty == 0
    assert decide_redeem(held.state, MONTH, 2001, "P1", T0).result is Result.EXCEEDS_ALLOWANCE
    posted = decide_post(held.state, MONTH, 3000, 1200, "P1", T0)
    assert posted.state.held_qty == 0 and posted.state.used_qty == 1200 and posted.remaining_qty == 3800
    assert decide_post(held.state, MONTH, 3000, 3001, "P1", T0).result is Result.EXCEEDS_HOLD
    assert decide_release(held.state, MONTH, 3000).state.held_qty == 0


def test_reversal_credits_used_but_never_below_zero() -> None:
    assert decide_reverse(state(used_qty=500), MONTH, ReversedDebit(500), 500).state.used_qty == 0
    assert decide_reverse(state(used_qty=500), MONTH, ReversedDebit(501), 501).result is Result.EXCEEDS_USED


def test_zero_or_negative_quantity_is_refused() -> None:
    assert decide_redeem(state(), MONTH, 0, "P1", T0).result is Result.INVALID_QUANTITY


GAP_BOUND = replace(MONTH, min_gap_s=86_400, binding_max_changes=1)
GAS = Terms(rule_version_id=2, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23)


def gas(**kw: object) -> AllowanceState:
    return state(product_code="gas", period_end=None, base_qty=1, granted_qty=1)._replace(**kw)  # type: ignore[arg-type]


def test_a_voided_hold_is_no_fill_neither_starting_the_gap_nor_binding_the_point() -> None:
    held = decide_hold(state(), GAP_BOUND, 3000, "P1", T0)
    assert held.ok and held.state.last_redeemed_at is None and held.state.home_point_code is None
    released = decide_release(held.state, GAP_BOUND, 3000).state
    assert decide_redeem(released, GAP_BOUND, 3000, "P2", T0 + timedelta(minutes=1)).ok
    empty = decide_post(held.state, GAP_BOUND, 3000, 0, "P1", T0).state
    assert empty.last_redeemed_at is None and empty.home_point_code is None


def test_a_posted_hold_is_the_fill_gap_and_binding_count_from_the_post() -> None:
    held = decide_hold(state(), GAP_BOUND, 3000, "P1", T0)
    post_at = T0 + timedelta(minutes=5)
    posted = decide_post(held.state, GAP_BOUND, 3000, 2000, "P1", post_at).state
    assert posted.last_redeemed_at == post_at and posted.home_point_code == "P1"
    soon = decide_redeem(posted, GAP_BOUND, 10, "P1", post_at + timedelta(hours=23))
    assert soon.result is Result.TOO_SOON and soon.possible_at == post_at + timedelta(days=1)
    assert decide_redeem(posted, GAP_BOUND, 10, "P2", post_at + timedelta(days=1)).result \
        is Result.POINT_NOT_BOUND


def test_with_a_gap_rule_a_pending_hold_is_a_fill_in_progress() -> None:
    held = decide_hold(state(), GAP_BOUND, 1000, "P1", T0).state
    assert decide_hold(held, GAP_BOUND, 1000, "P1", T0).result is Result.TOO_SOON
    assert decide_redeem(held, GAP_BOUND, 1000, "P1", T0).result is Result.TOO_SOON
    assert decide_hold(held, MONTH, 1000, "P1", T0).ok  # without a gap rule, two pumps may run


def test_a_released_hold_closes_the_rolling_window_it_opened() -> None:
    at = T0 + timedelta(days=3)
    held = decide_hold(gas(), GAS, 1, "P1", at).state
    assert held.period_end == at + timedelta(days=23)
    released = decide_release(held, GAS, 1).state
    assert released.period_end is None and released.used_qty == 0
    later = at + timedelta(days=20)
    filled = decide_redeem(released, GAS, 1, "P1", later)
    assert filled.ok and filled.state.period_start == later  # the clock counts from the real fill
    assert decide_redeem(filled.state, GAS, 1, "P1", at + timedelta(days=23)).result \
        is Result.EXCEEDS_ALLOWANCE


def test_a_topup_after_the_rolling_window_ended_is_drawable_in_the_next() -> None:
    drawn = decide_redeem(gas(), GAS, 1, "P1", T0).state
    after = T0 + timedelta(days=30)
    topped = decide_topup(drawn, GAS, 1, after, cap_qty=1)
    assert topped.ok and topped.state.granted_qty == 2 and topped.state.used_qty == 0
    assert topped.state.period_end is None  # the top-up does not start the rolling clock
    fill_at = after + timedelta(days=2)
    filled = decide_redeem(topped.state, GAS, 2, "P1", fill_at)
    assert filled.ok and filled.state.period_start == fill_at and filled.remaining_qty == 0
    assert decide_topup(topped.state, GAS, 1, fill_at, cap_qty=1).result is Result.EXCEEDS_ALLOWANCE


HEATING = Terms(rule_version_id=3, product_code="heating_diesel", period_kind=PeriodKind.SEASON,
                price_per_qty=1000, tiers=(PriceTier("subsidised", 500), PriceTier("free", 1700, 50_000)),
                batches=(BatchRelease(0, 100_000), BatchRelease(45, 100_000, catch_up=True),
                         BatchRelease(75, 100_000)))


def heating(**kw: object) -> AllowanceState:
    return state(product_code="heating_diesel", period_end=T0 + timedelta(days=167), base_qty=200_000,
                 granted_qty=250_000)._replace(**kw)  # type: ignore[arg-type]


def test_batches_gate_the_subsidised_base_and_the_free_tier_follows_the_last_batch() -> None:
    first = decide_redeem(heating(), HEATING, 100_000, "P1", T0)
    assert first.ok
    assert decide_redeem(first.state, HEATING, 1, "P1", T0 + timedelta(days=74)).result \
        is Result.EXCEEDS_ALLOWANCE  # neither the next batch nor the free tier before day 75
    day75 = T0 + timedelta(days=75)
    rest = decide_redeem(first.state, HEATING, 150_000, "P1", day75)
    assert rest.ok and [(c.tier, c.qty) for c in rest.charges] == [("subsidised", 100_000), ("free", 50_000)]
    late = decide_redeem(heating(), HEATING, 250_001, "P1", day75)
    assert late.result is Result.EXCEEDS_ALLOWANCE  # who waited gets no more than who drew in turn
    assert decide_redeem(heating(), HEATING, 250_000, "P1", day75).ok


def test_a_topup_on_a_batched_rule_is_drawable_at_once() -> None:
    drawn = decide_redeem(heating(), HEATING, 100_000, "P1", T0).state
    topped = decide_topup(drawn, HEATING, 40_000, T0 + timedelta(days=10), cap_qty=40_000).state
    assert decide_redeem(topped, HEATING, 40_000, "P1", T0 + timedelta(days=10)).ok


def test_a_new_rolling_window_gives_back_the_station_changes_and_keeps_the_station() -> None:
    """RULES.md: a card is tied to its last station, with n changes per period — for a rolling rule the
    period is the window, so its restart gives the n changes back (the card stays at its station)."""
    car = replace(GAS, binding_max_changes=1)
    spent = state(product_code="gas", rule_version_id=2, granted_qty=1, base_qty=1, used_qty=1,
                  period_start=T0, period_end=T0 + timedelta(days=23), home_point_code="P2",
                  binding_changes=1)
    later = T0 + timedelta(days=24)
    assert decide_rebind(spent, car, "P3", T0 + timedelta(days=2)).result is Result.BINDING_CHANGES_EXHAUSTED
    assert decide_redeem(spent, car, 1, "P1", later).result is Result.POINT_NOT_BOUND
    refill = decide_redeem(spent, car, 1, "P2", later)
    assert refill.ok and refill.state.home_point_code == "P2" and refill.state.binding_changes == 0
    moved = decide_rebind(refill.state, car, "P3", later)
    assert moved.ok and moved.state.binding_changes == 1
    # nor need the car fill once more at its old station to move: the ended window's limit is spent,
    # the next window's is not
    early = decide_rebind(spent, car, "P3", later)
    assert early.ok and early.state.home_point_code == "P3" and early.state.binding_changes == 1
    assert early.state.used_qty == 0 and early.state.period_end is None  # the window opens at the fill
    assert decide_redeem(early.state, car, 1, "P3", later + timedelta(hours=1)).ok
