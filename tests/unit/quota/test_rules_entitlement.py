"""Eligibility predicates and amounts over columns: every rule feature on a hand-made population."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest

from quota.domain import amounts, eligibility, entitlement
from quota.domain.eligibility import HolderColumns, ages_at
from quota.domain.rules import Amount, Eligibility, Rule

AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
GOVS = ("aleppo", "damascus", "homs")


def families() -> HolderColumns:
    # Five families: sizes 1, 3, 5, 7, 4; members' ages listed per family.
    ages = [[40], [40, 38, 10], [70, 45, 44, 12, 8], [50, 49, 20, 18, 15, 3, 1], [30, 29, 2, 0]]
    member_holder = [i for i, a in enumerate(ages) for _ in a]
    return HolderColumns.build(
        "family",
        [11, 12, 13, 14, 15],
        GOVS,
        [1, 0, 1, 2, 1],
        family_size=[len(a) for a in ages],
        excluded=[False, False, False, False, True],
        member_holder=member_holder,
        member_age=[x for a in ages for x in a],
    )


def vehicles() -> HolderColumns:
    kinds = ["private", "private", "taxi", "motorcycle", "government", "private"]
    return HolderColumns.build(
        "vehicle",
        [1, 2, 3, 4, 5, 6],
        GOVS,
        [1, 1, 0, 2, 1, 0],
        vehicle_kind=[eligibility.VEHICLE_KINDS.index(k) for k in kinds],
        fuel=[0, 0, 0, 0, 0, 1],
        engine_cc=[1600, 2400, 1500, 150, 3000, 1800],
        model_year=[2010, 2019, 2005, 2015, 2020, 2001],
        licence_valid=[True, True, False, True, True, True],
        nth_vehicle=[1, 2, 1, 1, 1, 1],
    )


def eligible(elig: dict[str, Any], cols: HolderColumns) -> list[int]:
    results = eligibility.evaluate(Eligibility.model_validate(elig), cols)
    return cols.ids[eligibility.eligible_mask(results, cols.n)].tolist()


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ({"governorate_in": ("damascus",)}, [11, 13]),
        ({"governorate_in": ("aleppo", "homs")}, [12, 14]),
        ({"governorate_in": ("nowhere",)}, []),
        ({"family_size": {"min": 3, "max": 5}}, [12, 13]),
        ({"members_aged": {"min_age": 0, "max_age": 5}}, [14]),
        ({"members_aged": {"min_age": 60, "max_age": 150}}, [13]),
        ({"members_aged": {"min_age": 0, "max_age": 17, "at_least": 2}}, [13, 14]),
        ({"excluded": None}, [11, 12, 13, 14, 15]),
        ({"excluded": True}, [15]),
    ],
)
def test_family_predicates(predicate: dict[str, Any], expected: list[int]) -> None:
    assert eligible(predicate, families()) == expected


def test_excluded_holders_are_not_eligible_by_default() -> None:
    assert eligible({}, families()) == [11, 12, 13, 14]


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ({"vehicle_kind_in": ("private",)}, [1, 2, 6]),
        ({"vehicle_kind_in": ("taxi", "motorcycle")}, [3, 4]),
        ({"fuel_in": ("diesel",)}, [6]),
        ({"engine_cc": {"min": 2000}}, [2, 5]),
        ({"engine_cc": {"max": 1999}}, [1, 3, 4, 6]),
        ({"model_year": {"min": 2008}}, [1, 2, 4, 5]),
        ({"licence_valid": True}, [1, 2, 4, 5, 6]),
        ({"nth_vehicle": {"min": 2}}, [2]),
        ({"vehicle_kind_in": ("private",), "engine_cc": {"max": 1999}, "fuel_in": ("gasoline",)}, [1]),
    ],
)
def test_vehicle_predicates(predicate: dict[str, Any], expected: list[int]) -> None:
    assert eligible(predicate, vehicles()) == expected


def test_predicate_reports_each_holders_value() -> None:
    (result,) = eligibility.evaluate(Eligibility(governorate_in=("homs",), excluded=None), families())
    assert result.values.tolist() == ["damascus", "aleppo", "damascus", "homs", "damascus"]
    assert result.passed.tolist() == [False, False, False, True, False]


def amount_of(spec: dict[str, Any]) -> list[int]:
    return amounts.compute(Amount.model_validate(spec), families()).qty.tolist()


def test_per_member_amount_with_family_cap() -> None:
    assert amount_of({"per_member_qty": 1000, "cap_qty": 4000}) == [1000, 3000, 4000, 4000, 4000]


def test_base_plus_per_member() -> None:
    assert amount_of({"base_qty": 500, "per_member_qty": 100}) == [600, 800, 1000, 1200, 900]


def test_per_eligible_member_counts_only_members_in_the_age_range() -> None:
    spec = {"per_member_qty": 250, "member_ages": {"min_age": 0, "max_age": 12}}
    assert amount_of(spec) == [0, 250, 500, 500, 500]


def test_band_table_by_family_size_with_cap() -> None:
    bands = [
        {"min_size": 1, "max_size": 2, "qty": 1},
        {"min_size": 3, "max_size": 4, "qty": 2},
        {"min_size": 5, "max_size": 6, "qty": 3},
        {"min_size": 7, "qty": 5},
    ]
    assert amount_of({"bands": bands, "cap_qty": 4}) == [1, 2, 3, 4, 2]
    assert amount_of({"bands": bands[:2]}) == [1, 2, 0, 0, 2]


def test_amount_arithmetic_is_described() -> None:
    spec = Amount(per_member_qty=1000, cap_qty=4000)
    parts = amounts.compute(spec, families())
    assert amounts.describe(spec, parts, 3) == "0 + 1000 × 7 members = 7000, cap 4000 → 4000"


def test_ages_are_whole_years_at_the_period_start() -> None:
    births = np.array(["2000-11-10", "2000-11-11", "2008-02-29"], dtype="datetime64[D]")
    assert ages_at(births, date(2026, 11, 10)).tolist() == [26, 25, 18]


def rule(**over: Any) -> Rule:
    body: dict[str, Any] = {
        "code": "r",
        "product": "gasoline",
        "holder_type": "vehicle",
        "amount": {"base_qty": 20000},
        "period": {"kind": "rolling", "days": 7},
        "tiers": [{"name": "subsidised", "price_minor": 750}],
        "effective_from": "2026-01-01",
    }
    body.update(over)
    return Rule.model_validate(body)


def test_first_matching_rule_by_priority_takes_the_holder() -> None:
    large = rule(
        code="large",
        priority=10,
        eligibility={"engine_cc": {"min": 2000}},
        tiers=[{"name": "free", "price_minor": 2000}],
    )
    normal = rule(
        code="normal",
        eligibility={"vehicle_kind_in": ["private"]},
        tiers=[
            {"name": "subsidised", "price_minor": 750},
            {"name": "free", "price_minor": 2000, "qty": 10000},
        ],
    )
    res = {r.rule.code: r for r in entitlement.compute([normal, large], {"vehicle": vehicles()}, AT)}
    assert res["large"].cols.ids[res["large"].allotted].tolist() == [2, 5]
    assert res["normal"].cols.ids[res["normal"].allotted].tolist() == [1, 6]
    assert res["normal"].shadowed.tolist() == [False, True, False, False, False, False]
    assert res["normal"].granted_qty.tolist() == [30000, 0, 0, 0, 0, 30000]
    assert res["normal"].base_qty.tolist() == [20000, 0, 0, 0, 0, 20000]


def test_rules_outside_their_effective_dates_or_season_are_not_computed() -> None:
    later = rule(code="later", effective_from="2027-01-01")
    ended = rule(code="ended", effective_from="2025-01-01", effective_to="2026-10-31")
    summer = rule(code="summer", period={"kind": "season", "start": "06-01", "end": "08-31"})
    current = rule(code="current")
    res = entitlement.compute([later, ended, summer, current], {"vehicle": vehicles()}, AT)
    assert [r.rule.code for r in res] == ["current"]


def test_nth_vehicle_ranks_cars_within_their_family_by_id() -> None:
    from quota.population import nth_in_group, positions

    families = np.array([7, 3, 7, 7, 3], dtype=np.int64)
    ids = np.array([50, 11, 12, 90, 40], dtype=np.int64)
    assert nth_in_group(families, ids).tolist() == [2, 1, 1, 3, 2]
    assert positions(np.array([2, 5, 9]), np.array([9, 4, 2])).tolist() == [2, -1, 0]
