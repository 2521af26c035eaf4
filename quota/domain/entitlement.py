"""Entitlement: every holder's allowance under every rule, computed over columns.

One function serves opening (which writes the result), simulation (which sums it) and explain
(which runs it on a population of one), so the three never disagree.

When several rules give the same product to the same holder type (a private car's subsidised
gasoline, a large car's free-price gasoline), a holder gets the allowance of the first matching
rule in ``(priority, code)`` order only: one allowance per holder, product and period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from quota.domain import amounts, eligibility
from quota.domain.eligibility import BoolArray, HolderColumns, IntArray, PredicateResult
from quota.domain.periods import UTC, Window, window
from quota.domain.rules import Rule


@dataclass(frozen=True)
class RuleResult:
    """One rule over one holder population; arrays are parallel to ``cols.ids``."""

    rule: Rule
    window: Window
    cols: HolderColumns
    predicates: list[PredicateResult]
    matched: BoolArray  # every predicate holds
    shadowed: BoolArray  # matched, but an earlier rule for the same product took the holder
    eligible: BoolArray  # matched and not shadowed
    parts: amounts.AmountParts
    base_qty: IntArray  # first tier, 0 where not eligible
    granted_qty: IntArray  # base + fixed extra tiers, 0 where not eligible

    @property
    def allotted(self) -> BoolArray:
        """Holders who get an allowance row (eligible with something to draw)."""
        return self.eligible & (self.granted_qty > 0)


def needs_member_ages(rules: Sequence[Rule]) -> bool:
    """Whether any rule looks at members' ages (otherwise opening skips reading birth dates)."""
    return any(r.eligibility.members_aged is not None or r.amount.member_ages is not None for r in rules)


def ordered(rules: Sequence[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (r.priority, r.code))


def compute(
    rules: Sequence[Rule], populations: Mapping[str, HolderColumns], at: datetime, tz: ZoneInfo = UTC
) -> list[RuleResult]:
    """Results of the rules in effect at ``at`` whose period has a window containing ``at``."""
    taken: dict[tuple[str, str], BoolArray] = {}
    results: list[RuleResult] = []
    for rule in ordered(rules):
        cols = populations.get(rule.holder_type)
        win = window(rule.period, at, tz)
        if cols is None or win is None or not rule.in_effect(at.astimezone(tz).date()):
            continue
        predicates = eligibility.evaluate(rule.eligibility, cols)
        matched = eligibility.eligible_mask(predicates, cols.n)
        key = (rule.holder_type, rule.product)
        before = taken.get(key, np.zeros(cols.n, dtype=bool))
        shadowed = matched & before
        elig = matched & ~before
        taken[key] = before | elig
        parts = amounts.compute(rule.amount, cols)
        base = np.where(elig, parts.qty, 0).astype(np.int64)
        granted = np.where(elig, parts.qty + rule.extra_tiers_qty, 0).astype(np.int64)
        results.append(RuleResult(rule, win, cols, predicates, matched, shadowed, elig, parts, base, granted))
    return results
