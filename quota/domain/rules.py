"""The rule language: an allocation rule as validated, immutable data.

Rules change every few months in the field (RULES.md), so they are data that administrators edit,
never code: a rule file is parsed with ``yaml.CSafeLoader`` or JSON and validated here, and nothing
is ever evaluated. The models are strict so that YAML 1.1 surprises (``no`` or ``on`` read as
booleans, ``1_000`` as an int) are refused instead of silently changing a rule. Only dates are lax,
so that the same body loads from YAML (``date`` objects) and from JSON or the database (ISO strings).

A rule says who is eligible (``Eligibility``), how much each eligible holder gets (``Amount``), over
which window (``PeriodSpec``), at which prices (``TierSpec``), and how the ledger meters the debits
(fill cap, gap, binding, batches). ``Rule.terms`` turns one stored version into the ledger's
``Terms``.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from quota.domain.terms import BatchRelease, PeriodKind, PriceTier, Terms, UnusedPolicy

HolderType = Literal["family", "person", "vehicle"]
VehicleKind = Literal["private", "taxi", "bus", "truck", "motorcycle", "agricultural", "government"]
Fuel = Literal["gasoline", "diesel"]
PeriodKindName = Literal["day", "week", "month", "quarter", "year", "season", "rolling"]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]
LaxDate = Annotated[date, Field(strict=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


def _list_to_tuple(value: Any) -> Any:
    """YAML and JSON give lists; the frozen models keep tuples. Items stay strictly validated."""
    return tuple(value) if isinstance(value, list) else value


ListIn = BeforeValidator(_list_to_tuple)

VEHICLE_KINDS: tuple[str, ...] = get_args(VehicleKind)
FUELS: tuple[str, ...] = get_args(Fuel)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class IntRange(_Strict):
    """Inclusive bounds; a missing bound is open."""

    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min} is above max {self.max}")
        return self


class AgeRange(_Strict):
    """Members whose age in whole years at the period start is in [min_age, max_age]."""

    min_age: NonNegativeInt = 0
    max_age: NonNegativeInt = 150

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        return self


class MembersAged(AgeRange):
    """Eligible when at least ``at_least`` living members are in the age range."""

    at_least: PositiveInt = 1


class Eligibility(_Strict):
    """Predicates over holder attributes, all of which must hold (AND).

    An absent predicate does not constrain. ``excluded`` defaults to ``False``: a holder on the
    exclusion list is not eligible unless a rule says otherwise. ``licence_valid`` is judged as of
    the period start. ``nth_vehicle`` is the vehicle's rank among its owner family's vehicles
    of the same kind and fuel (by id), for the "second car pays the free price" rule: a family's
    motorcycle or diesel van does not make its only gasoline car a second car.
    """

    governorate_in: Annotated[tuple[str, ...], ListIn] | None = None
    family_size: IntRange | None = None
    members_aged: MembersAged | None = None
    vehicle_kind_in: Annotated[tuple[VehicleKind, ...], ListIn] | None = None
    fuel_in: Annotated[tuple[Fuel, ...], ListIn] | None = None
    engine_cc: IntRange | None = None
    model_year: IntRange | None = None
    licence_valid: bool | None = None
    excluded: bool | None = False
    nth_vehicle: IntRange | None = None


class Band(_Strict):
    """A row of a table by family size: families of min_size..max_size members get qty."""

    min_size: NonNegativeInt
    max_size: NonNegativeInt | None = None
    qty: NonNegativeInt


class Amount(_Strict):
    """The entitlement of one eligible holder per period.

    Either ``base_qty + per_member_qty × members`` (members = living members, or only those in
    ``member_ages``), or a table of family-size ``bands``; then capped at ``cap_qty``.
    """

    base_qty: NonNegativeInt = 0
    per_member_qty: NonNegativeInt = 0
    member_ages: AgeRange | None = None
    bands: Annotated[tuple[Band, ...], ListIn] | None = None
    cap_qty: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Amount:
        if self.bands is not None and (self.base_qty or self.per_member_qty or self.member_ages):
            raise ValueError("an amount is either a band table or base + per member, not both")
        if self.member_ages is not None and not self.per_member_qty:
            raise ValueError("member_ages needs per_member_qty")
        return self


class PeriodSpec(_Strict):
    """The window an allowance covers.

    Calendar kinds (day, week from Monday, month, quarter, year) are aligned to the calendar;
    ``season`` runs from ``start`` to ``end`` (month-day, may cross the new year); ``rolling``
    lasts ``days`` from the holder's first redemption in the window.
    """

    kind: PeriodKindName
    days: PositiveInt | None = None
    start: MonthDay | None = None
    end: MonthDay | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> PeriodSpec:
        if (self.kind == "rolling") != (self.days is not None):
            raise ValueError("days is required for a rolling period and only for it")
        if (self.kind == "season") != (self.start is not None and self.end is not None):
            raise ValueError("start and end are required for a season and only for it")
        return self


class TierSpec(_Strict):
    """A price slice: the first has no qty (it is the computed amount); later ones are fixed."""

    name: str
    price_minor: NonNegativeInt
    qty: PositiveInt | None = None


class BatchSpec(_Strict):
    """A dated release of part of the amount; see ``quota.domain.batches`` for the semantics."""

    offset_days: NonNegativeInt
    qty: PositiveInt
    catch_up: bool = False


class UnusedSpec(_Strict):
    """What happens to the unused first-tier quantity when the period ends."""

    policy: Literal["expire", "carry_over", "points"] = "expire"
    carry_cap_qty: NonNegativeInt = 0
    points_per_qty: NonNegativeInt = 0
    points_product: str = "points"

    @model_validator(mode="after")
    def _fields_for_policy(self) -> UnusedSpec:
        if self.policy == "carry_over" and not self.carry_cap_qty:
            raise ValueError("carry_over needs carry_cap_qty")
        if self.policy == "points" and not self.points_per_qty:
            raise ValueError("points needs points_per_qty")
        return self


class Rule(_Strict):
    """One allocation rule (the body of a rule version)."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    product: Annotated[str, Field(min_length=1, max_length=64)]
    holder_type: HolderType
    description: str = ""
    priority: int = 100
    eligibility: Eligibility = Eligibility()
    amount: Amount
    period: PeriodSpec
    tiers: Annotated[tuple[TierSpec, ...], ListIn] = Field(min_length=1)
    fill_cap_qty: PositiveInt | None = None
    min_gap_s: PositiveInt | None = None
    binding_max_changes: NonNegativeInt | None = None
    batches: Annotated[tuple[BatchSpec, ...], ListIn] = ()
    unused: UnusedSpec = UnusedSpec()
    effective_from: LaxDate
    effective_to: LaxDate | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.tiers[0].qty is not None:
            raise ValueError("the first tier is the computed amount: it takes no qty")
        if any(t.qty is None for t in self.tiers[1:]):
            raise ValueError("tiers after the first need a fixed qty")
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.batches and self.period.kind == "rolling":
            raise ValueError("batches need a calendar or season period")
        return self

    def in_effect(self, on: date) -> bool:
        return self.effective_from <= on and (self.effective_to is None or on <= self.effective_to)

    @property
    def extra_tiers_qty(self) -> int:
        """Quantity of the fixed tiers beyond the computed amount (sold at their own prices)."""
        return sum(t.qty or 0 for t in self.tiers[1:])

    def terms(self, rule_version_id: int, price_per_qty: int) -> Terms:
        return Terms(
            rule_version_id=rule_version_id,
            product_code=self.product,
            period_kind=PeriodKind(self.period.kind),
            price_per_qty=price_per_qty,
            tiers=tuple(PriceTier(t.name, t.price_minor, t.qty) for t in self.tiers),
            rolling_days=self.period.days,
            fill_cap_qty=self.fill_cap_qty,
            min_gap_s=self.min_gap_s,
            binding_max_changes=self.binding_max_changes,
            batches=tuple(BatchRelease(b.offset_days, b.qty, b.catch_up) for b in self.batches),
            unused_policy=UnusedPolicy(self.unused.policy),
            carry_cap_qty=self.unused.carry_cap_qty,
            points_per_qty=self.unused.points_per_qty,
        )


class ProductSpec(_Strict):
    """A product as a rule file declares it (the admin API stores it in ``products``)."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    name_ar: str
    name_en: str
    unit: Literal["ml", "g", "piece", "bundle", "point"]
    price_per_qty: PositiveInt = 1
    free_price_minor: NonNegativeInt = 0
    walk_in: bool = False


class RuleSet(_Strict):
    """A rule file: products (optional) and rules with unique codes."""

    products: Annotated[tuple[ProductSpec, ...], ListIn] = ()
    rules: Annotated[tuple[Rule, ...], ListIn]

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        rule_codes = [r.code for r in self.rules]
        for kind, codes in (("rule", rule_codes), ("product", [p.code for p in self.products])):
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} codes: {', '.join(dupes)}")
        return self


def _ruleset(data: Any) -> RuleSet:
    if isinstance(data, list):
        data = {"rules": data}
    return RuleSet.model_validate(data)


def ruleset_from_yaml(text: str) -> RuleSet:
    """A rule file in YAML: a list of rules, or a mapping with ``rules`` and ``products``."""
    return _ruleset(yaml.load(text, Loader=yaml.CSafeLoader))


def ruleset_from_json(text: str) -> RuleSet:
    return _ruleset(json.loads(text))


def rules_from_yaml(text: str) -> tuple[Rule, ...]:
    return ruleset_from_yaml(text).rules


def rules_from_json(text: str) -> tuple[Rule, ...]:
    return ruleset_from_json(text).rules


def rule_from_body(body: dict[str, Any]) -> Rule:
    """A rule from its stored ``model_dump(mode="json")`` body."""
    return Rule.model_validate(body)
