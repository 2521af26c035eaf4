"""Rules an administrator can save must not break the system: bounds, meaning, and rule files.

Each refusal is a pydantic ``ValidationError`` (the API answers it 422), with a message naming what is
wrong; the demo rule set and realistic rules still pass.
"""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from quota.domain.periods import window
from quota.domain.rules import (
    MAX_DAYS,
    MAX_GAP_S,
    MAX_GRANT_QTY,
    MAX_PRICE_MINOR,
    MAX_PRIORITY,
    MAX_QTY,
    POPULATION_PREDICATES,
    PeriodSpec,
    ProductSpec,
    Rule,
    UniqueKeyLoader,
    rule_from_body,
    ruleset_from_yaml,
)

DEMO = Path(__file__).resolve().parents[3] / "quota" / "rulesets" / "demo.yaml"

SUGAR: dict[str, Any] = {
    "code": "sugar_family",
    "product": "sugar",
    "holder_type": "family",
    "amount": {"per_member_qty": 1000, "cap_qty": 4000},
    "period": {"kind": "month"},
    "tiers": [{"name": "subsidised", "price_minor": 350}],
    "effective_from": "2026-01-01",
}
CAR: dict[str, Any] = {
    "code": "gasoline_private",
    "product": "gasoline",
    "holder_type": "vehicle",
    "eligibility": {"vehicle_kind_in": ["private"], "fuel_in": ["gasoline"], "licence_valid": True},
    "amount": {"base_qty": 20000},
    "period": {"kind": "rolling", "days": 7},
    "tiers": [
        {"name": "subsidised", "price_minor": 750},
        {"name": "free", "price_minor": 2000, "qty": 20000},
    ],
    "effective_from": "2026-01-01",
}


def body(base: dict[str, Any], path: str = "", value: Any = None, **top: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``value`` set at the dotted ``path`` (and top-level fields ``top``)."""
    out = copy.deepcopy(base)
    if path:
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    out.update(top)
    return out


def refused(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Rule.model_validate(data)


# 1. huge numbers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "where"),
    [
        (body(SUGAR, "amount", {"base_qty": 10**30}), "amount.base_qty"),
        (body(SUGAR, "amount", {"per_member_qty": 2**62}), "amount.per_member_qty"),
        (body(SUGAR, "amount", {"per_member_qty": 1000, "cap_qty": 10**30}), "amount.cap_qty"),
        (body(SUGAR, "amount", {"bands": [{"min_size": 1, "qty": 10**30}]}), "amount.bands.0.qty"),
        (
            body(CAR, "tiers", [CAR["tiers"][0], {"name": "free", "price_minor": 2000, "qty": 10**30}]),
            "tiers.1.qty",
        ),
        (body(CAR, "fill_cap_qty", 10**30), "fill_cap_qty"),
        (body(SUGAR, "unused", {"policy": "carry_over", "carry_cap_qty": 10**30}), "unused.carry_cap_qty"),
        (body(SUGAR, "batches", [{"offset_days": 0, "qty": 10**30}]), "batches.0.qty"),
    ],
)
def test_quantities_above_the_bound_are_refused_where_they_are(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as err:
        Rule.model_validate(data)
    (first, *_) = err.value.errors()
    assert ".".join(str(p) for p in first["loc"]) == where
    assert first["type"] == "less_than_equal" and first["ctx"]["le"] == MAX_QTY


@pytest.mark.parametrize("price", [10**19, 10**30, MAX_PRICE_MINOR + 1])
def test_prices_above_the_bound_are_refused(price: int) -> None:
    refused(body(SUGAR, "tiers", [{"name": "subsidised", "price_minor": price}]), "less than or equal")
    with pytest.raises(ValidationError):
        ProductSpec(code="sugar", name_ar="سكر", name_en="Sugar", unit="g", free_price_minor=price)


def test_a_product_price_per_qty_fits_its_integer_column() -> None:
    with pytest.raises(ValidationError):
        ProductSpec(code="sugar", name_ar="سكر", name_en="Sugar", unit="g", price_per_qty=2**31)


def test_the_largest_grant_of_a_holder_must_stay_within_the_bound() -> None:
    # every field within its bound, but a family of 100 would get 100 × 1e11 = 1e13
    refused(body(SUGAR, "amount", {"per_member_qty": 10**11}), f"the most allowed is {MAX_GRANT_QTY}")
    # the same with a family cap is fine: the cap is the most anyone gets
    assert Rule.model_validate(body(SUGAR, "amount", {"per_member_qty": 10**11, "cap_qty": 10**12}))
    # base, extra tiers and carry-over add up
    big = {"base_qty": 6 * 10**11}
    extra = [{"name": "s", "price_minor": 1}, {"name": "f", "price_minor": 1, "qty": 6 * 10**11}]
    refused(body(SUGAR, "amount", big, tiers=extra), "could grant one holder 1200000000000 units")
    carry = {"policy": "carry_over", "carry_cap_qty": 6 * 10**11}
    refused(body(SUGAR, "amount", big, unused=carry), "could grant one holder")
    assert Rule.model_validate(body(SUGAR, "amount", {"base_qty": MAX_GRANT_QTY}, tiers=[extra[0]]))


def test_the_largest_charge_and_points_must_fit_in_64_bits() -> None:
    refused(
        body(SUGAR, "amount", {"base_qty": 10**12}, tiers=[{"name": "s", "price_minor": 10**7}]),
        "could cost one holder more than",
    )
    points = {"policy": "points", "points_per_qty": 10**7}
    refused(
        body(SUGAR, "amount", {"base_qty": 10**12}, unused=points), "more than 1000000000000000000 points"
    )


# 2. time fields ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "where"),
    [
        (body(CAR, "period.days", 10**9), "period.days"),
        (body(CAR, "period.days", MAX_DAYS + 1), "period.days"),
        (body(SUGAR, "min_gap_s", 10**12), "min_gap_s"),
        (body(SUGAR, "min_gap_s", MAX_GAP_S + 1), "min_gap_s"),
        (body(SUGAR, "batches", [{"offset_days": 10**9, "qty": 1000}]), "batches.0.offset_days"),
        (body(SUGAR, "binding_max_changes", 10**30), "binding_max_changes"),
    ],
)
def test_time_fields_beyond_their_bound_are_refused(data: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as err:
        Rule.model_validate(data)
    assert [".".join(str(p) for p in e["loc"]) for e in err.value.errors()] == [where]


def test_time_fields_at_their_bound_are_accepted() -> None:
    assert Rule.model_validate(body(CAR, "period.days", MAX_DAYS)).period.days == MAX_DAYS
    assert Rule.model_validate(body(SUGAR, "min_gap_s", MAX_GAP_S)).min_gap_s == 366 * 86400
    batch = [{"offset_days": MAX_DAYS, "qty": 1000}]
    assert Rule.model_validate(body(SUGAR, "batches", batch)).batches[0].offset_days == 3660


# 3. rules that would silently match nobody -------------------------------------------------------
VEHICLE_ONLY = {
    "vehicle_kind_in": ["private"],
    "fuel_in": ["gasoline"],
    "engine_cc": {"min": 2000},
    "model_year": {"min": 2010},
    "licence_valid": True,
    "nth_vehicle": {"min": 2},
}
MEMBERS_ONLY = {"family_size": {"min": 2}, "members_aged": {"min_age": 18, "at_least": 1}}


@pytest.mark.parametrize("holder_type", ["family", "person"])
@pytest.mark.parametrize(("name", "value"), sorted(VEHICLE_ONLY.items()))
def test_vehicle_predicates_on_a_family_or_person_rule_are_refused(
    holder_type: str, name: str, value: Any
) -> None:
    data = body(SUGAR, f"eligibility.{name}", value, holder_type=holder_type)
    refused(data, f"eligibility {name} does not apply to a {holder_type} rule")


@pytest.mark.parametrize(("name", "value"), sorted(MEMBERS_ONLY.items()))
def test_member_predicates_on_a_vehicle_rule_are_refused(name: str, value: Any) -> None:
    refused(body(CAR, f"eligibility.{name}", value), f"eligibility {name} does not apply to a vehicle rule")


def test_each_holder_type_keeps_the_predicates_its_population_loads() -> None:
    for name, value in MEMBERS_ONLY.items():
        for holder_type in ("family", "person"):
            assert Rule.model_validate(body(SUGAR, f"eligibility.{name}", value, holder_type=holder_type))
    assert Rule.model_validate(body(CAR, "eligibility", {**VEHICLE_ONLY, "governorate_in": ["homs"]}))
    assert Rule.model_validate(body(CAR, "eligibility.excluded", None))
    assert POPULATION_PREDICATES["family"] == POPULATION_PREDICATES["person"]


def test_a_vehicle_rule_has_no_per_member_amount_or_bands() -> None:
    refused(body(CAR, "amount", {"per_member_qty": 1000}), "a vehicle has no members")
    refused(body(CAR, "amount", {"bands": [{"min_size": 1, "qty": 1000}]}), "a vehicle has no members")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (body(SUGAR, "eligibility.governorate_in", []), "governorate_in is an empty list"),
        (body(CAR, "eligibility.vehicle_kind_in", []), "vehicle_kind_in is an empty list"),
        (body(CAR, "eligibility.fuel_in", []), "fuel_in is an empty list"),
        (body(SUGAR, "amount", {"bands": []}), "a band table needs at least one band"),
        (
            body(SUGAR, "amount", {"bands": [{"min_size": 6, "max_size": 1, "qty": 1}]}),
            "min_size 6 is above max_size 1",
        ),
        (
            body(
                SUGAR,
                "amount",
                {"bands": [{"min_size": 1, "max_size": 4, "qty": 1}, {"min_size": 3, "qty": 2}]},
            ),
            "bands 1..4 and 3\\+ overlap",
        ),
        (
            body(SUGAR, "amount", {"bands": [{"min_size": 5, "qty": 2}, {"min_size": 1, "qty": 1}]}),
            "bands 1\\+ and 5\\+ overlap",
        ),
        (
            body(
                SUGAR,
                "amount",
                {"bands": [{"min_size": 1, "max_size": 2, "qty": 1}, {"min_size": 2, "qty": 2}]},
            ),
            "a family of 2 members would be in both",
        ),
    ],
)
def test_empty_lists_and_bad_band_tables_are_refused(data: dict[str, Any], match: str) -> None:
    refused(data, match)


def test_a_band_table_with_a_gap_or_in_any_order_is_accepted() -> None:
    bands = [
        {"min_size": 7, "qty": 4},
        {"min_size": 1, "max_size": 2, "qty": 1},
        {"min_size": 3, "max_size": 6, "qty": 2},
    ]
    assert Rule.model_validate(body(SUGAR, "amount", {"bands": bands}))


# 4. season dates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "bad"),
    [("02-30", "03-31", "start 02-30"), ("01-01", "04-31", "end 04-31"), ("11-31", "02-28", "start 11-31"),
     ("06-31", "08-31", "start 06-31"), ("09-01", "09-31", "end 09-31"), ("10-15", "02-30", "end 02-30")],
)  # fmt: skip
def test_season_days_that_do_not_exist_are_refused(start: str, end: str, bad: str) -> None:
    with pytest.raises(ValidationError, match=f"season {bad} is not a day of the year"):
        PeriodSpec(kind="season", start=start, end=end)


def test_29_february_is_a_season_day_and_falls_back_in_common_years() -> None:
    spec = PeriodSpec(kind="season", start="12-01", end="02-29")
    assert spec.end == "02-29"
    common = window(spec, datetime(2027, 2, 28, 12, tzinfo=UTC))
    leap = window(spec, datetime(2028, 2, 29, 12, tzinfo=UTC))
    assert common is not None and common.end == datetime(2027, 3, 1, tzinfo=UTC)
    assert leap is not None and leap.end == datetime(2028, 3, 1, tzinfo=UTC)


# 5. other nonsense -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (body(SUGAR, "amount", {"base_qty": 5000, "cap_qty": 10}), "cap_qty 10 is below base_qty 5000"),
        (
            body(SUGAR, "amount", {"base_qty": 5000, "per_member_qty": 1000, "cap_qty": 0}),
            "cap_qty 0 is below",
        ),
        (
            body(SUGAR, "unused", {"policy": "expire", "carry_cap_qty": 5000}),
            "carry_cap_qty would be ignored",
        ),
        (body(SUGAR, "unused", {"points_per_qty": 5}), "points_per_qty would be ignored with policy expire"),
        (
            body(SUGAR, "unused", {"policy": "carry_over", "carry_cap_qty": 500, "points_per_qty": 5}),
            "points_per_qty would be ignored with policy carry_over",
        ),
        (
            body(SUGAR, "unused", {"policy": "points", "points_per_qty": 5, "carry_cap_qty": 500}),
            "carry_cap_qty would be ignored with policy points",
        ),
        (body(SUGAR, "unused", {"points_product": "bonus"}), "points_product would be ignored"),
        (
            body(
                CAR,
                "tiers",
                [{"name": "s", "price_minor": 750}, {"name": "s", "price_minor": 2000, "qty": 1}],
            ),
            "tier names must differ: s is used more than once",
        ),
        (body(SUGAR, "tiers", [{"name": "", "price_minor": 350}]), "a tier needs a name"),
        (body(SUGAR, "tiers", [{"name": "   ", "price_minor": 350}]), "a tier needs a name"),
        (body(SUGAR, "tiers", [{"name": "x" * 65, "price_minor": 350}]), "at most 64 characters"),
        (body(SUGAR, effective_from="1999-12-31"), "greater than or equal to 2000-01-01"),
        (body(SUGAR, effective_from="0001-01-01"), "greater than or equal to 2000-01-01"),
        (body(SUGAR, effective_from="2101-01-01"), "less than or equal to 2100-12-31"),
        (body(SUGAR, effective_to="9999-12-31"), "less than or equal to 2100-12-31"),
        (body(SUGAR, priority=-1), "greater than or equal to 0"),
        (body(SUGAR, priority=MAX_PRIORITY + 1), "less than or equal to 10000"),
        (body(SUGAR, priority=10**40), "less than or equal to 10000"),
    ],
)
def test_settings_that_are_ignored_or_absurd_are_refused(data: dict[str, Any], match: str) -> None:
    refused(data, match)


def test_sane_edges_are_accepted() -> None:
    for priority in (0, MAX_PRIORITY):
        assert Rule.model_validate(body(SUGAR, priority=priority)).priority == priority
    assert Rule.model_validate(body(SUGAR, effective_from="2000-01-01", effective_to="2100-12-31"))
    assert Rule.model_validate(body(SUGAR, "amount", {"base_qty": 5000, "cap_qty": 5000}))
    assert Rule.model_validate(
        body(SUGAR, "amount", {"base_qty": 500, "per_member_qty": 1000, "cap_qty": 4000})
    )
    assert Rule.model_validate(body(SUGAR, "amount", {"base_qty": 0}))  # the points account: nothing granted


# 6. rule files -----------------------------------------------------------------------------------
SUGAR_YAML = """\
rules:
  - code: sugar_family
    product: sugar
    holder_type: family
    amount: {per_member_qty: 1000, cap_qty: 4000}
    period: {kind: month}
    tiers: [{name: subsidised, price_minor: 350}]
    effective_from: 2026-01-01
"""


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        (SUGAR_YAML.replace("cap_qty: 4000}", "cap_qty: 4000, cap_qty: 400000}"), "cap_qty", "lines 5 and 5"),
        (SUGAR_YAML + "    effective_from: 2027-01-01\n", "effective_from", "lines 8 and 9"),
        (SUGAR_YAML.replace("  - code", "  - product: rice\n    code"), "product", "lines 2 and 4"),
        ("rules: []\nrules: []\n", "rules", "lines 1 and 2"),
    ],
)
def test_duplicate_yaml_keys_are_refused_naming_the_key_and_lines(text: str, key: str, lines: str) -> None:
    with pytest.raises(ValidationError, match=f"key {key} is given twice \\({lines}\\)") as err:
        ruleset_from_yaml(text)
    assert err.value.errors()[0]["type"] == "duplicate_key"


def test_merge_keys_may_still_be_overridden() -> None:
    text = SUGAR_YAML.replace("amount: {", "base: &base {per_member_qty: 500}\n    amount: {<<: *base, ")
    with pytest.raises(ValidationError) as err:  # the stray key is refused by the rule, not the loader
        ruleset_from_yaml(text)
    assert [(e["loc"][-1], e["type"]) for e in err.value.errors()] == [("base", "extra_forbidden")]
    plain = yaml.load("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n", Loader=UniqueKeyLoader)
    assert plain == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


def test_the_loader_is_safe_and_uses_libyaml_when_present() -> None:
    if yaml.__with_libyaml__:
        assert issubclass(UniqueKeyLoader, yaml.CSafeLoader)
    assert issubclass(UniqueKeyLoader, yaml.constructor.SafeConstructor)
    (rule,) = ruleset_from_yaml(SUGAR_YAML).rules
    assert rule.amount.cap_qty == 4000 and rule.effective_from == date(2026, 1, 1)


# realistic rules ---------------------------------------------------------------------------------
def test_the_demo_rule_set_still_validates_and_round_trips() -> None:
    rs = ruleset_from_yaml(DEMO.read_text(encoding="utf-8"))
    assert len(rs.rules) >= 10
    for rule in rs.rules:
        assert Rule.model_validate(rule.model_dump(mode="json")) == rule
        assert rule.max_grant_qty <= 10**6  # the largest demo grant: 800 L of gasoline a month


def test_a_stored_body_from_before_a_consistency_check_still_loads_but_bounds_apply() -> None:
    legacy = body(SUGAR, "eligibility.licence_valid", True, amount={"base_qty": 5000, "cap_qty": 10})
    with pytest.raises(ValidationError):
        Rule.model_validate(legacy)
    assert rule_from_body(legacy).amount.cap_qty == 10  # a version stored earlier keeps metering
    with pytest.raises(ValidationError):
        rule_from_body(body(SUGAR, "amount", {"base_qty": 10**30}))


@pytest.mark.parametrize("name", ["", "x" * 81, "a\x00b", "line\x1bescape"])
def test_a_rule_files_product_name_is_what_the_products_columns_hold(name: str) -> None:
    """A rule file's product is checked as the API's is: PostgreSQL would refuse the name at load."""
    with pytest.raises(ValidationError):
        ProductSpec(code="caviar", name_ar=name, name_en="Caviar", unit="g")
    assert ProductSpec(code="caviar", name_ar="كافيار", name_en="Caviar", unit="g").name_ar == "كافيار"
