"""Property: any sequence of redemptions, holds, posts, voids and reversals keeps 0 ≤ used + held ≤ granted,
and ``used`` always equals the sum of what was debited minus what was credited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from quota.domain.decide import (
    AllowanceState,
    ReversedDebit,
    decide_hold,
    decide_post,
    decide_redeem,
    decide_release,
    decide_reverse,
    decide_topup,
)
from quota.domain.terms import PeriodKind, PriceTier, Terms

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TERMS = Terms(rule_version_id=1, product_code="diesel", period_kind=PeriodKind.MONTH, price_per_qty=1000,
              tiers=(PriceTier("subsidised", 750), PriceTier("free", 2000, 50_000)), fill_cap_qty=60_000)
STEP = st.tuples(st.sampled_from(["redeem", "hold", "post", "void", "reverse", "topup"]),
                 st.integers(min_value=-5, max_value=80_000))


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_no_sequence_overdraws_and_used_matches_the_movements(steps: list[tuple[str, int]]) -> None:
    state = AllowanceState(id=1, holder_type="family", holder_id=1, product_code="diesel", rule_version_id=1,
                           period_start=T0, period_end=T0 + timedelta(days=30), base_qty=200_000,
                           granted_qty=250_000)
    holds: list[int] = []
    debits: list[int] = []
    net = 0
    for n, (op, qty) in enumerate(steps):
        now = T0 + timedelta(minutes=n)
        if op == "redeem":
            d = decide_redeem(state, TERMS, qty, "P1", now)
            if d.ok:
                debits.append(d.debit_qty)
                net += d.debit_qty
        elif op == "hold":
            d = decide_hold(state, TERMS, qty, "P1", now)
            if d.ok:
                holds.append(qty)
        elif op in ("post", "void") and holds:
            reserved = holds.pop()
            d = decide_post(state, TERMS, reserved, min(max(qty, 0), reserved), "P1", now) if op == "post" \
                else decide_release(state, TERMS, reserved)
            if op == "post" and d.ok:
                debits.append(d.debit_qty)
                net += d.debit_qty
        elif op == "reverse" and debits:
            debit = debits.pop()
            d = decide_reverse(state, TERMS, ReversedDebit(debit), debit)
            if d.ok:
                net += d.debit_qty
        elif op == "topup":
            d = decide_topup(state, TERMS, qty, now, cap_qty=40_000)
        else:
            continue
        state = d.state
        assert state.used_qty >= 0 and state.held_qty >= 0
        assert state.used_qty + state.held_qty <= state.granted_qty
        assert state.used_qty == net
        assert state.held_qty == sum(holds)
