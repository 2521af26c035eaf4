"""Simulation totals against a hand-computed population, the difference between rule sets, explain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from quota.domain import explain as ex
from quota.domain.decide import AllowanceState
from quota.domain.eligibility import HolderColumns
from quota.domain.rules import VEHICLE_KINDS, Rule, rules_from_yaml, ruleset_from_yaml
from quota.domain.simulate import ProductPrice, difference, simulate

AT = datetime(2026, 11, 18, 12, tzinfo=UTC)
DEMO = ruleset_from_yaml((Path(__file__).resolve().parents[3] / "quota/rulesets/demo.yaml").read_text())
PRICES = {p.code: ProductPrice(p.price_per_qty, p.free_price_minor) for p in DEMO.products}


def allowance(
    product: str, rule_version_id: int, start: datetime, end: datetime | None, base: int, granted: int,
    **meters: object,
) -> AllowanceState:
    """An allowance row as the ledger holds it (explain reads the ledger's own state)."""
    return AllowanceState(1, "vehicle", 1, product, rule_version_id, start, end, base, granted, **meters)  # type: ignore[arg-type]


def families() -> HolderColumns:
    # sizes 2 (damascus), 5 (damascus), 3 (homs), 8 (homs, excluded)
    sizes = [2, 5, 3, 8]
    return HolderColumns.build(
        "family",
        [1, 2, 3, 4],
        ("damascus", "homs"),
        [0, 0, 1, 1],
        family_size=sizes,
        excluded=[False, False, False, True],
        member_holder=[i for i, s in enumerate(sizes) for _ in range(s)],
        member_age=[30] * sum(sizes),
    )


def test_sugar_simulation_matches_hand_computation() -> None:
    sugar = [r for r in DEMO.rules if r.code == "sugar_family"]
    sim, _ = simulate(sugar, {"family": families()}, PRICES, AT)
    # damascus: 2 kg + 4 kg (cap) = 6000 g; homs: 3000 g (the excluded family gets nothing)
    # subsidy per kg: 3500 - 350 = 3150
    got = {(ln.governorate, ln.product): (ln.holders, ln.base_qty, ln.subsidy_minor) for ln in sim.lines}
    assert got == {("damascus", "sugar"): (2, 6000, 18900), ("homs", "sugar"): (1, 3000, 9450)}
    assert sim.totals()[("family", "sugar", "month")].subsidy_minor == 28350
    assert sim.totals()[("family", "sugar", "month")].subsidy_minor_per_year == 12 * 28350


def test_proposed_rule_set_is_compared_with_the_current_one() -> None:
    current = [r for r in DEMO.rules if r.code in ("sugar_family", "bread_family")]
    body = (
        current[1].model_dump(mode="json")
        if current[1].code == "sugar_family"
        else current[0].model_dump(mode="json")
    )
    body["amount"] = {"per_member_qty": 1000, "cap_qty": 3000}
    body["eligibility"] = {"family_size": {"min": 3}}
    proposed = [r for r in current if r.code != "sugar_family"] + [Rule.model_validate(body)]
    new, old = simulate(proposed, {"family": families()}, PRICES, AT, baseline=current)
    assert old is not None
    delta = {(d.governorate, d.product): (d.holders, d.base_qty_per_year) for d in difference(new, old)}
    # damascus loses the 2-person family (-2000) and the 5-person family drops from 4000 to 3000, a month
    assert delta[("damascus", "sugar")] == (-1, -3000 * 12)
    assert delta[("homs", "sugar")] == (0, 0)
    assert delta[("damascus", "bread")] == (0, 0)
    changes = {c.product: (c.gained_holders, c.lost_holders) for c in new.changes}
    assert changes["sugar"] == (0, 1) and changes["bread"] == (0, 0)
    assert {c.product: c.changed_holders for c in new.changes} == {"sugar": 1, "bread": 0}  # 4 kg → 3 kg


def vehicle() -> HolderColumns:
    return HolderColumns.build(
        "vehicle",
        [77],
        ("damascus",),
        [0],
        vehicle_kind=[VEHICLE_KINDS.index("private")],
        fuel=[0],
        engine_cc=[2400],
        model_year=[2015],
        licence_valid=[True],
        nth_vehicle=[1],
    )


def versions(rules: tuple[Rule, ...] | list[Rule]) -> list[tuple[int, Rule]]:
    return [(i + 100, r) for i, r in enumerate(rules)]


def test_explain_names_each_predicate_value_and_the_rule_that_took_the_holder() -> None:
    out = {e["rule"]: e for e in ex.explain(vehicle(), versions(DEMO.rules), AT)}
    large = out["gasoline_large_car"]
    assert large["applies"] is True and large["tiers"] == [
        {"name": "free", "price_minor": 2000, "qty": 20000}
    ]
    cc = next(p for p in large["predicates"] if p["name"] == "engine_cc")
    assert cc == {"name": "engine_cc", "required": "2000..inf", "value": 2400, "passed": True}
    private = out["gasoline_private"]
    assert private["matched"] is True and private["applies"] is False
    assert private["shadowed_by"] == "gasoline_large_car"
    taxi = out["gasoline_taxi"]
    kind = next(p for p in taxi["predicates"] if p["name"] == "vehicle_kind_in")
    assert kind["value"] == "private" and kind["passed"] is False
    assert "sugar_family" not in out  # other holder types are not listed


def test_explain_shows_fill_cap_gap_binding_and_batch_state_from_the_allowance() -> None:
    fam = families().take(0)
    rules = versions(DEMO.rules)
    season_start = datetime(2026, 10, 15, tzinfo=UTC)
    rows = [
        allowance(
            "heating_diesel", 106, season_start, datetime(2027, 4, 1, tzinfo=UTC), 200_000, 250_000
        )
    ]
    out = {e["rule"]: e for e in ex.explain(fam, rules, season_start + timedelta(days=50), rows)}
    heat = out["heating_diesel_family"]["allowance"]["batches"]
    # the catch-up releases the whole subsidised base early, so the free tier follows it
    assert heat["catch_up_applies"] is True and heat["limit_qty"] == 250_000
    assert heat["next_release_at"] == (season_start + timedelta(days=75)).isoformat()

    gov = HolderColumns.build(
        "vehicle",
        [5],
        ("damascus",),
        [0],
        vehicle_kind=[VEHICLE_KINDS.index("government")],
        fuel=[0],
        engine_cc=[3000],
    )
    last = AT - timedelta(hours=2)
    row = allowance(
        "gasoline",
        105,
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        800_000,
        800_000,
        used_qty=50_000,
        last_redeemed_at=last,
    )
    g = {e["rule"]: e for e in ex.explain(gov, rules, AT, [row])}["gasoline_government"]["allowance"]
    assert g["fill_cap"] == {"fill_cap_qty": 50_000}
    assert (
        g["gap"]["too_soon"] is True and g["gap"]["next_allowed_at"] == (last + timedelta(days=1)).isoformat()
    )
    assert g["remaining_qty"] == 750_000

    car = allowance(
        "gasoline", 102, AT, None, 20_000, 40_000, home_point_code="P1", binding_changes=1
    )
    small = HolderColumns.build(
        "vehicle",
        [6],
        ("damascus",),
        [0],
        vehicle_kind=[0],
        fuel=[0],
        engine_cc=[1600],
        licence_valid=[True],
        nth_vehicle=[1],
    )
    p = {e["rule"]: e for e in ex.explain(small, rules, AT, [car], point_code="P2")}["gasoline_private"]
    assert p["allowance"]["binding"] == {
        "home_point_code": "P1",
        "changes_used": 1,
        "max_changes": 2,
        "point_code": "P2",
        "point_ok": False,
    }


def test_explain_says_why_a_rule_does_not_apply_at_all() -> None:
    rules = rules_from_yaml((Path(__file__).resolve().parents[3] / "quota/rulesets/demo.yaml").read_text())
    summer = datetime(2026, 7, 1, tzinfo=UTC)
    out = {e["rule"]: e for e in ex.explain(families().take(1), versions(rules), summer)}
    assert out["heating_diesel_family"] == {
        "rule": "heating_diesel_family",
        "rule_version_id": 106,
        "product": "heating_diesel",
        "holder_type": "family",
        "applies": False,
        "reason": "outside the period (season)",
    }
    assert out["bread_family"]["amount"] == "band 5..6 members → 3, cap 4 → 3"


def test_explain_takes_the_ledgers_own_allowance_state() -> None:
    row = allowance(
        "sugar", 109, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), 4000, 4000,
        used_qty=1500, held_qty=500,
    )
    out = {e["rule"]: e for e in ex.explain(families().take(1), versions(DEMO.rules), AT, [row])}
    assert out["sugar_family"]["allowance"]["remaining_qty"] == 2000


def test_explain_speaks_of_the_rows_the_ledger_serves_now() -> None:
    nov, dec = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    ended = allowance("sugar", 109, datetime(2026, 10, 1, tzinfo=UTC), nov, 4000, 4000)
    current = allowance("rice", 110, nov, dec, 2000, 2000)
    rolling = allowance("gas_cylinder", 107, datetime(2026, 9, 3, tzinfo=UTC), None, 1, 1)
    future = allowance("tea", 111, dec, datetime(2027, 1, 1, tzinfo=UTC), 100, 100)
    rules = dict(versions(DEMO.rules))
    assert ex.serving([ended, current, rolling, future], rules, AT) == [rolling, current]  # by product
    # an ended period's row is not served (the ledger says not_eligible until the next one is opened)
    assert ex.serving([ended], rules, AT) == []
    # a rolling renewal that grants nothing (eligibility lost) is not served either
    lost = allowance("gas_cylinder", 107, datetime(2026, 11, 10, tzinfo=UTC), None, 0, 0)
    assert ex.serving([rolling, lost], rules, AT) == []
    assert ex.serving([], rules, AT) == []


def test_explain_shows_the_row_on_the_version_that_opened_it() -> None:
    # the car's window was opened as a second car (free price); it is now the family's first car
    row = allowance("gasoline", 101, AT - timedelta(days=1), AT + timedelta(days=6), 20_000, 20_000,
                    used_qty=10_000, last_redeemed_at=AT - timedelta(days=1))
    small = vehicle()
    small.engine_cc[0] = 1600
    out = {e["rule"]: e for e in ex.explain(small, versions(DEMO.rules), AT, [row])}
    second, private = out["gasoline_second_car"], out["gasoline_private"]
    assert second["serving"] is True and second["applies"] is True and second["matched"] is False
    assert second["allowance"]["rule_version_id"] == 101 and second["allowance"]["remaining_qty"] == 10_000
    assert second["tiers"] == [{"name": "free", "price_minor": 2000, "qty": 20_000}]
    assert [n["code"] for n in second["notes"]] == ["served_until_it_ends"]
    assert private["matched"] is True and private["applies"] is False and private["serving"] is False
    assert "allowance" not in private
    assert private["served_by"] == {"rule": "gasoline_second_car", "rule_version_id": 101}
    assert all(n["ar"] and n["en"] for n in private["notes"])


def test_explain_judges_a_calendar_rule_as_of_its_period_start_and_notes_today() -> None:
    # the holder as the registry has it today (18 Nov: excluded) and on 1 Nov, when November opened
    today, nov1 = families().take(3), families().take(0)

    def on(day: object) -> HolderColumns:
        return nov1

    row = allowance("sugar", 109, datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC),
                    2000, 2000)
    out = {e["rule"]: e for e in ex.explain(today, versions(DEMO.rules), AT, [row], holder_on=on)}
    sugar = out["sugar_family"]
    assert sugar["judged_on"] == "2026-11-01" and sugar["applies"] is True and sugar["serving"] is True
    assert sugar["today"]["applies"] is False and sugar["today"]["failed"] == ["excluded"]
    assert [n["code"] for n in sugar["notes"]] == ["changed_since_period_start"]
    assert out["bread_family"]["judged_on"] == "2026-11-18"  # a day's bread: judged today
    # between two periods the ended month's row is not shown, and an unopened period is named
    dec = {e["rule"]: e for e in ex.explain(nov1, versions(DEMO.rules), datetime(2026, 12, 1, 8, tzinfo=UTC),
                                            [row], opened_periods=set())}["sugar_family"]
    assert "allowance" not in dec and dec["period_opened"] is False
    assert [n["code"] for n in dec["notes"]] == ["period_not_opened"]
