"""The terms a redemption is decided under, derived from one rule version.

This is the contract between the rule language (``quota.domain.rules``), which says who gets how
much, and the ledger (``quota.domain.decide``), which debits. A rule version is immutable, so its
``Terms`` can be cached by ``rule_version_id`` for the life of a process: the hot path never parses a
rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PeriodKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    SEASON = "season"
    ROLLING = "rolling"


class UnusedPolicy(StrEnum):
    EXPIRE = "expire"
    CARRY_OVER = "carry_over"
    POINTS = "points"


@dataclass(frozen=True, slots=True)
class PriceTier:
    """A slice of the period's quantity sold at one price.

    ``qty`` is the slice's size; ``None`` on the first tier means "the holder's computed
    entitlement" (the allowance's ``base_qty``). Prices are minor currency units per
    ``Terms.price_per_qty`` units of quantity (e.g. 750 per 1000 ml).
    """

    name: str
    price_minor: int
    qty: int | None = None


@dataclass(frozen=True, slots=True)
class BatchRelease:
    """Part of a period's amount that becomes usable ``offset_days`` after the period starts."""

    offset_days: int
    qty: int
    catch_up: bool = False


@dataclass(frozen=True, slots=True)
class Terms:
    rule_version_id: int
    product_code: str
    period_kind: PeriodKind
    price_per_qty: int = 1
    tiers: tuple[PriceTier, ...] = ()
    rolling_days: int | None = None
    fill_cap_qty: int | None = None
    min_gap_s: int | None = None
    binding_max_changes: int | None = None
    batches: tuple[BatchRelease, ...] = field(default_factory=tuple)
    unused_policy: UnusedPolicy = UnusedPolicy.EXPIRE
    carry_cap_qty: int = 0
    points_per_qty: int = 0
