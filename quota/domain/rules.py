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

Every number has a bound (``MAX_QTY``, ``MAX_PRICE_MINOR``, ``MAX_DAYS``, ...) and a rule as a whole
must keep its largest grant and charge well inside 64 bits (``Rule._fits``): the amounts, prices and
dates are computed in numpy ``int64``, ``datetime`` and ``BIGINT`` columns, where a number past them
fails or silently wraps for every holder. A rule must also mean what it says: predicates the holder
type's population does not carry, empty lists, overlapping bands, month-days that do not exist and
settings the chosen policy ignores are refused. Every refusal is a pydantic ``ValidationError``.

Stored bodies (``rule_from_body``) are read with the bounds but without the consistency checks, so
a version accepted before a check existed still loads: refuse nonsense when it is written, never
when it is read.
"""

from __future__ import annotations

import json
from datetime import date
from itertools import pairwise
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml: the pure-Python parser
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from quota.domain.terms import BatchRelease, PeriodKind, PriceTier, Terms, UnusedPolicy

HolderType = Literal["family", "person", "vehicle"]
VehicleKind = Literal["private", "taxi", "bus", "truck", "motorcycle", "agricultural", "government"]
Fuel = Literal["gasoline", "diesel"]
PeriodKindName = Literal["day", "week", "month", "quarter", "year", "season", "rolling"]
MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]

# Bounds. Generous for real rules (1e12 ml is a million cubic metres; 1e12 minor units is ten
# billion in a currency of 100 minor units), and far enough inside int64 (9.2e18) that no sum over a
# holder's tiers, or over a governorate's holders, overflows in numpy or a BIGINT column.
MAX_QTY = 10**12
"""Any quantity of a rule, in the product's smallest unit."""
MAX_PRICE_MINOR = 10**12
"""Any price, in minor units per ``price_per_qty`` units."""
MAX_PRICE_PER_QTY = 2**31 - 1
"""A product's ``price_per_qty`` (an ``Integer`` column)."""
MAX_MEMBERS = 100
"""The largest family ``per_member_qty`` is judged with when bounding a rule's amount."""
MAX_GRANT_QTY = 10**12
"""The most one holder may be granted in a period: amount (at ``MAX_MEMBERS``, capped), extra tiers
and carry-over together."""
MAX_PRODUCT = 10**18
"""Quantity × price (a charge) and quantity × points_per_qty (points) of one holder, at the most."""
MAX_DAYS = 3660
"""Rolling period length and batch offsets, in days (ten years)."""
MAX_GAP_S = 366 * 86400
"""``min_gap_s``: a year between two redemptions at the most."""
MAX_PRIORITY = 10_000
MAX_BINDING_CHANGES = 1000
MAX_NAME = 64
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)

LaxDate = Annotated[date, Field(strict=False, ge=FIRST_DAY, le=LAST_DAY)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Qty = Annotated[int, Field(ge=0, le=MAX_QTY)]
PositiveQty = Annotated[int, Field(gt=0, le=MAX_QTY)]
Price = Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR)]
Days = Annotated[int, Field(ge=0, le=MAX_DAYS)]


def _checking(info: ValidationInfo) -> bool:
    """Whether the consistency checks apply: always, except for a body read back from storage."""
    return not (isinstance(info.context, dict) and info.context.get("stored") is True)


def _named(value: str) -> str:
    if not value.strip():
        raise ValueError("a tier needs a name (it is printed on receipts and reports)")
    if len(value) > MAX_NAME:
        raise ValueError(f"a tier name has at most {MAX_NAME} characters")
    return value


TierName = Annotated[str, AfterValidator(_named)]


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

    min_age: Annotated[int, Field(ge=0, le=150)] = 0
    max_age: Annotated[int, Field(ge=0, le=150)] = 150

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min_age > self.max_age:
            raise ValueError("min_age is above max_age")
        return self


class MembersAged(AgeRange):
    """Eligible when at least ``at_least`` living members are in the age range."""

    at_least: Annotated[int, Field(gt=0, le=MAX_MEMBERS)] = 1


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

    @model_validator(mode="after")
    def _no_empty_lists(self, info: ValidationInfo) -> Eligibility:
        if _checking(info):
            for name in ("governorate_in", "vehicle_kind_in", "fuel_in"):
                if getattr(self, name) == ():
                    raise ValueError(
                        f"{name} is an empty list, which matches nobody: list at least one value, "
                        "or leave the predicate out to match everyone"
                    )
        return self

    def stated(self) -> tuple[str, ...]:
        """The predicates this rule states (``excluded`` counts only when it differs from the default)."""
        return tuple(
            name for name in type(self).model_fields
            if getattr(self, name) is not None and not (name == "excluded" and self.excluded is False)
        )  # fmt: skip


_EVERY_HOLDER = ("governorate_in", "excluded")
_VEHICLE_ONLY = ("vehicle_kind_in", "fuel_in", "engine_cc", "model_year", "licence_valid", "nth_vehicle")
POPULATION_PREDICATES: dict[str, frozenset[str]] = {
    # quota.population: families and persons carry governorate, family size, members' ages and the
    # exclusion list; no vehicle or licence columns (they would read -1, 0 or false for everyone)
    "family": frozenset((*_EVERY_HOLDER, "family_size", "members_aged")),
    "person": frozenset((*_EVERY_HOLDER, "family_size", "members_aged")),
    # vehicles carry no members: their family_size is a constant 1 and no member has an age
    "vehicle": frozenset((*_EVERY_HOLDER, *_VEHICLE_ONLY)),
}
"""The eligibility predicates each holder type's population really loads."""


class Band(_Strict):
    """A row of a table by family size: families of min_size..max_size members get qty."""

    min_size: Annotated[int, Field(ge=0, le=MAX_MEMBERS)]
    max_size: Annotated[int, Field(ge=0, le=MAX_MEMBERS)] | None = None
    qty: Qty

    @model_validator(mode="after")
    def _ordered(self, info: ValidationInfo) -> Band:
        if _checking(info) and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(
                f"band min_size {self.min_size} is above max_size {self.max_size}: it matches nobody"
            )
        return self

    def text(self) -> str:
        return f"{self.min_size}+" if self.max_size is None else f"{self.min_size}..{self.max_size}"


class Amount(_Strict):
    """The entitlement of one eligible holder per period.

    Either ``base_qty + per_member_qty × members`` (members = living members, or only those in
    ``member_ages``), or a table of family-size ``bands``; then capped at ``cap_qty``.
    """

    base_qty: Qty = 0
    per_member_qty: Qty = 0
    member_ages: AgeRange | None = None
    bands: Annotated[tuple[Band, ...], ListIn] | None = None
    cap_qty: Qty | None = None

    @model_validator(mode="after")
    def _one_form(self, info: ValidationInfo) -> Amount:
        if self.bands is not None and (self.base_qty or self.per_member_qty or self.member_ages):
            raise ValueError("an amount is either a band table or base + per member, not both")
        if self.member_ages is not None and not self.per_member_qty:
            raise ValueError("member_ages needs per_member_qty")
        if not _checking(info):
            return self
        if self.bands is not None:
            if not self.bands:
                raise ValueError("bands is empty: a band table needs at least one band")
            ordered = sorted(self.bands, key=lambda b: b.min_size)
            for lower, upper in pairwise(ordered):
                if lower.max_size is None or upper.min_size <= lower.max_size:
                    raise ValueError(
                        f"bands {lower.text()} and {upper.text()} overlap: a family of {upper.min_size} "
                        "members would be in both"
                    )
        elif self.cap_qty is not None and self.cap_qty < self.base_qty:
            raise ValueError(
                f"cap_qty {self.cap_qty} is below base_qty {self.base_qty}: every holder would get the cap; "
                "lower base_qty or raise cap_qty"
            )
        return self

    def largest_qty(self, members: int = MAX_MEMBERS) -> int:
        """The most this amount grants one holder (a family of ``members`` at the most), cap applied."""
        if self.bands is not None:
            top = max((b.qty for b in self.bands), default=0)
        else:
            top = self.base_qty + self.per_member_qty * members
        return top if self.cap_qty is None else min(top, self.cap_qty)


class PeriodSpec(_Strict):
    """The window an allowance covers.

    Calendar kinds (day, week from Monday, month, quarter, year) are aligned to the calendar;
    ``season`` runs from ``start`` to ``end`` (month-day, may cross the new year); ``rolling``
    lasts ``days`` from the holder's first redemption in the window.
    """

    kind: PeriodKindName
    days: Annotated[int, Field(gt=0, le=MAX_DAYS)] | None = None
    start: MonthDay | None = None
    end: MonthDay | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self, info: ValidationInfo) -> PeriodSpec:
        if (self.kind == "rolling") != (self.days is not None):
            raise ValueError("days is required for a rolling period and only for it")
        if (self.kind == "season") != (self.start is not None and self.end is not None):
            raise ValueError("start and end are required for a season and only for it")
        if _checking(info):
            for name in ("start", "end"):
                month_day: str | None = getattr(self, name)
                if month_day is None:
                    continue
                month, day = (int(x) for x in month_day.split("-"))
                try:
                    date(2000, month, day)  # a leap year: 02-29 is a day (28 Feb in common years)
                except ValueError:
                    raise ValueError(f"season {name} {month_day} is not a day of the year") from None
        return self


class TierSpec(_Strict):
    """A price slice: the first has no qty (it is the computed amount); later ones are fixed."""

    name: TierName
    price_minor: Price
    qty: PositiveQty | None = None


class BatchSpec(_Strict):
    """A dated release of part of the amount; see ``quota.domain.batches`` for the semantics."""

    offset_days: Days
    qty: PositiveQty
    catch_up: bool = False


class UnusedSpec(_Strict):
    """What happens to the unused first-tier quantity when the period ends."""

    policy: Literal["expire", "carry_over", "points"] = "expire"
    carry_cap_qty: Qty = 0
    points_per_qty: Annotated[int, Field(ge=0, le=MAX_PRICE_MINOR)] = 0
    points_product: str = "points"

    @model_validator(mode="after")
    def _fields_for_policy(self, info: ValidationInfo) -> UnusedSpec:
        if self.policy == "carry_over" and not self.carry_cap_qty:
            raise ValueError("carry_over needs carry_cap_qty")
        if self.policy == "points" and not self.points_per_qty:
            raise ValueError("points needs points_per_qty")
        if _checking(info):
            ignored = [
                name for name, used_by, default in (
                    ("carry_cap_qty", "carry_over", 0),
                    ("points_per_qty", "points", 0),
                    ("points_product", "points", "points"),
                )
                if self.policy != used_by and getattr(self, name) != default
            ]  # fmt: skip
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} would be ignored with policy {self.policy}: remove "
                    f"{'it' if len(ignored) == 1 else 'them'} or choose the policy that uses "
                    f"{'it' if len(ignored) == 1 else 'them'}"
                )
        return self


class Rule(_Strict):
    """One allocation rule (the body of a rule version)."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    product: Annotated[str, Field(min_length=1, max_length=64)]
    holder_type: HolderType
    description: str = ""
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY)] = 100
    eligibility: Eligibility = Eligibility()
    amount: Amount
    period: PeriodSpec
    tiers: Annotated[tuple[TierSpec, ...], ListIn] = Field(min_length=1)
    fill_cap_qty: PositiveQty | None = None
    min_gap_s: Annotated[int, Field(gt=0, le=MAX_GAP_S)] | None = None
    binding_max_changes: Annotated[int, Field(ge=0, le=MAX_BINDING_CHANGES)] | None = None
    batches: Annotated[tuple[BatchSpec, ...], ListIn] = ()
    unused: UnusedSpec = UnusedSpec()
    effective_from: LaxDate
    effective_to: LaxDate | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Rule:
        if self.tiers[0].qty is not None:
            raise ValueError("the first tier is the computed amount: it takes no qty")
        if any(t.qty is None for t in self.tiers[1:]):
            raise ValueError("tiers after the first need a fixed qty")
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        if self.batches and self.period.kind == "rolling":
            raise ValueError("batches need a calendar or season period")
        if _checking(info):
            self._means_something()
        self._fits()
        return self

    def _means_something(self) -> None:
        """Refuse what would silently match nobody or be ignored."""
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must differ: {', '.join(dupes)} is used more than once")
        allowed = POPULATION_PREDICATES[self.holder_type]
        foreign = [p for p in self.eligibility.stated() if p not in allowed]
        if foreign:
            raise ValueError(
                f"eligibility {', '.join(foreign)} does not apply to a {self.holder_type} rule "
                f"({self.holder_type} holders have no such attribute, so it would match nobody or "
                f"everyone); a {self.holder_type} rule may use: {', '.join(sorted(allowed))}"
            )
        if self.holder_type == "vehicle" and (self.amount.per_member_qty or self.amount.bands is not None):
            raise ValueError(
                "a vehicle has no members: per_member_qty and bands by family size apply to family "
                "and person rules only; give a vehicle rule a base_qty"
            )

    def _fits(self) -> None:
        """Refuse a rule whose largest grant, charge or points would not fit comfortably in int64."""
        grant = self.max_grant_qty
        if grant > MAX_GRANT_QTY:
            raise ValueError(
                f"this rule could grant one holder {grant} units in a period (amount for a family of "
                f"{MAX_MEMBERS}, after the cap, plus extra tiers and carry-over); the most allowed is "
                f"{MAX_GRANT_QTY}"
            )
        price = max(t.price_minor for t in self.tiers)
        if grant * price > MAX_PRODUCT:
            raise ValueError(
                f"{grant} units at a price of {price} could cost one holder more than {MAX_PRODUCT} "
                "minor units: lower the quantities or the price"
            )
        points = self.amount.largest_qty() * self.unused.points_per_qty
        if self.unused.policy == "points" and points > MAX_PRODUCT:
            raise ValueError(
                f"points_per_qty {self.unused.points_per_qty} on up to {self.amount.largest_qty()} unused "
                f"units could give one holder more than {MAX_PRODUCT} points: lower it"
            )

    @property
    def max_grant_qty(self) -> int:
        """The most one holder can be granted in a period: the amount for a family of ``MAX_MEMBERS``
        (capped), the fixed extra tiers, and the carry-over cap."""
        carry = self.unused.carry_cap_qty if self.unused.policy == "carry_over" else 0
        return self.amount.largest_qty() + self.extra_tiers_qty + carry

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


ProductName = Annotated[
    str, Field(min_length=1, max_length=80, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
]
"""A product's name as the ``products`` columns hold it: 1 to 80 characters, no control characters."""


class ProductSpec(_Strict):
    """A product as a rule file declares it (the admin API stores it in ``products``)."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,32}$")]
    name_ar: ProductName
    name_en: ProductName
    unit: Literal["ml", "g", "piece", "bundle", "point"]
    price_per_qty: Annotated[int, Field(gt=0, le=MAX_PRICE_PER_QTY)] = 1
    free_price_minor: Price = 0
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


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping of a YAML file gives the same key twice (YAML itself would keep the last silently)."""

    def __init__(self, key: object, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(
            f"while reading a mapping (key {key!r} first on line {first.line + 1})", first,
            f"found duplicate key {key!r}", again,
        )  # fmt: skip
        self.key = key
        self.first_line = first.line + 1
        self.line = again.line + 1


class UniqueKeyLoader(_SafeLoader):
    """The safe loader (libyaml's parser when PyYAML has it), refusing duplicate mapping keys.

    ``cap_qty: 4000`` followed by ``cap_qty: 400000`` is a typo or a bad merge, never a wish: a rule
    file must say each thing once. Keys merged in with ``<<`` may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor refuses it
                continue
            if first is not None:
                raise DuplicateKeyError(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def ruleset_from_yaml(text: str) -> RuleSet:
    """A rule file in YAML: a list of rules, or a mapping with ``rules`` and ``products``.

    A key given twice in one mapping is refused as a ``ValidationError`` naming the key and lines.
    """
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # safe: no Python object tags
    except DuplicateKeyError as exc:
        raise ValidationError.from_exception_data(
            "RuleSet",
            [
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_key",
                        "key {key} is given twice (lines {first_line} and {line}): say it once",
                        {"key": str(exc.key), "first_line": exc.first_line, "line": exc.line},
                    ),
                    loc=(str(exc.key),),
                    input=str(exc.key),
                )
            ],
        ) from exc
    return _ruleset(data)


def ruleset_from_json(text: str) -> RuleSet:
    return _ruleset(json.loads(text))


def rules_from_yaml(text: str) -> tuple[Rule, ...]:
    return ruleset_from_yaml(text).rules


def rules_from_json(text: str) -> tuple[Rule, ...]:
    return ruleset_from_json(text).rules


def rule_from_body(body: dict[str, Any]) -> Rule:
    """A rule from its stored ``model_dump(mode="json")`` body.

    Bounds apply; the consistency checks added over time do not, so a version stored before one of
    them existed still loads (and meters the allowances opened under it) as it did.
    """
    return Rule.model_validate(body, context={"stored": True})
