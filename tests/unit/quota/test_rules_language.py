"""The rule language: loading from YAML and JSON, strictness, versioned terms."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from quota.domain.rules import Rule, rule_from_body, rules_from_json, rules_from_yaml
from quota.domain.terms import PeriodKind, UnusedPolicy

DEMO = Path(__file__).resolve().parents[3] / "quota" / "rulesets" / "demo.yaml"

SUGAR = """
- code: sugar_family
  product: sugar
  holder_type: family
  amount: {per_member_qty: 1000, cap_qty: 4000}
  period: {kind: month}
  tiers: [{name: subsidised, price_minor: 350}]
  effective_from: 2026-01-01
"""


def test_yaml_rule_loads_and_round_trips_through_its_stored_body() -> None:
    (rule,) = rules_from_yaml(SUGAR)
    assert rule.amount.cap_qty == 4000
    assert rule.effective_from == date(2026, 1, 1)
    assert rule_from_body(rule.model_dump(mode="json")) == rule
    assert rules_from_json(json.dumps([rule.model_dump(mode="json")])) == (rule,)


@pytest.mark.parametrize(
    "bad",
    [
        SUGAR.replace("name: subsidised", "name: no"),  # YAML 1.1 'no' is a boolean, not a name
        SUGAR.replace("kind: month", "kind: on"),
        SUGAR.replace("cap_qty: 4000", "cap_qty: '4000'"),
        SUGAR.replace("cap_qty: 4000", "cap_qty: 4000.5"),
        SUGAR.replace("holder_type: family", "holder_type: family\n  surprise: 1"),
        SUGAR.replace("kind: month", "kind: fortnight"),
        SUGAR.replace("kind: month", "kind: rolling"),  # rolling needs days
        SUGAR.replace("[{name: subsidised, price_minor: 350}]", "[{name: s, price_minor: 350, qty: 5}]"),
        SUGAR.replace("effective_from: 2026-01-01", "effective_from: 2026-01-01\n  effective_to: 2025-01-01"),
    ],
)
def test_malformed_or_ambiguous_rules_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        rules_from_yaml(bad)


def test_duplicate_codes_in_one_rule_set_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        rules_from_yaml(SUGAR + SUGAR.replace("- code", "\n- code"))


def test_yaml_is_never_evaluated() -> None:
    with pytest.raises(Exception):  # noqa: B017 - any refusal is fine, execution is not
        rules_from_yaml("!!python/object/apply:os.system ['echo hacked']")


def test_rule_is_frozen() -> None:
    (rule,) = rules_from_yaml(SUGAR)
    with pytest.raises(ValidationError):
        rule.code = "other"  # type: ignore[misc]


def test_terms_carry_the_metering_fields_for_the_ledger() -> None:
    (rule,) = rules_from_yaml(
        SUGAR.replace(
            "kind: month",
            "kind: month}\n  fill_cap_qty: 50\n  min_gap_s: 86400\n"
            "  binding_max_changes: 2\n  unused: {policy: carry_over, carry_cap_qty: 500",
        )
    )
    terms = rule.terms(rule_version_id=7, price_per_qty=1000)
    assert terms.rule_version_id == 7
    assert terms.period_kind is PeriodKind.MONTH
    assert (terms.fill_cap_qty, terms.min_gap_s, terms.binding_max_changes) == (50, 86400, 2)
    assert terms.unused_policy is UnusedPolicy.CARRY_OVER and terms.carry_cap_qty == 500
    assert terms.tiers[0].qty is None and terms.tiers[0].price_minor == 350


def test_demo_rule_set_loads() -> None:
    rules = rules_from_yaml(DEMO.read_text())
    products = {r.product for r in rules}
    assert {"gasoline", "heating_diesel", "gas_cylinder", "bread", "sugar", "rice", "tea"} <= products
    assert all(isinstance(r, Rule) for r in rules)
