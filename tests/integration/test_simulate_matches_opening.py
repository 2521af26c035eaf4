"""Simulation against the opening it previews, on SQLite and PostgreSQL.

What an administrator previewing a rule change relies on: the simulated window is what opening it
then grants (carry-over and bread points included), a period edit shows in the difference (per year),
rules of one product with different periods are separate lines, and families and persons are never
added together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from card_backend.config import Settings
from card_backend.rules import service as rules_service
from quota import rules_repository
from quota.domain.periods import window
from quota.domain.rules import Rule
from quota.domain.simulate import period_name
from quota.opening import open_period
from tests.integration.rules_seed import (
    FAMILIES,
    allowance_rows,
    demo_ruleset,
    seed_registry,
    seed_rules,
    touch,
)

Auth = Callable[..., dict[str, str]]
NOV = datetime(2026, 11, 18, 12, tzinfo=UTC)
NOV30 = datetime(2026, 11, 30, 9, tzinfo=UTC)  # noon in Damascus (the deployment's zone)
DEC1 = datetime(2026, 12, 1, 9, tzinfo=UTC)
SUGAR_GAP = 3500 - 350  # free price − subsidised price, per kg
GAS_GAP = 32000 - 11500  # per cylinder


def setup(factory: sessionmaker[Session]) -> None:
    with factory.begin() as s:
        seed_registry(s)
        seed_rules(s)


def simulate(
    factory: sessionmaker[Session], settings: Settings, at: datetime, rules: list[Rule] | None = None
) -> dict[str, Any]:
    with factory() as s:
        return rules_service.simulate(s, settings, rules, at, compare=rules is not None)


def opened(factory: sessionmaker[Session], settings: Settings, at: datetime) -> Counter[tuple[str, ...]]:
    """What the allowances of the windows containing ``at`` hold, summed as simulate's lines are:
    (holder type, governorate, product, period of the rule version, figure) → total."""
    out: Counter[tuple[str, ...]] = Counter()
    # points are credited from another rule's unused quantity: compared with that rule's ``points``
    products = sorted({r.product for r in demo_ruleset().rules} - {"points"})
    with factory() as s:
        rule_of = rules_repository.by_ids(s, [v.id for v in rules_repository.versions(s)])
        for holder_type, table in (("family", "families"), ("vehicle", "vehicles")):
            gov = {int(i): str(g) for i, g in s.execute(text(f"SELECT id, governorate FROM {table}"))}
            for product in products:
                for row in allowance_rows(s, holder_type, sorted(gov), product):
                    rule = rule_of[row["rule_version_id"]]
                    w = window(rule.period, at, settings.zone)
                    if w is None or row["period_start"] != w.start or row["granted_qty"] == 0:
                        continue
                    key = (holder_type, gov[row["holder_id"]], product, period_name(rule.period))
                    out[(*key, "holders")] += 1
                    for figure in ("base_qty", "granted_qty", "carried_qty"):
                        out[(*key, figure)] += row[figure]
    return out


def simulated(lines: list[Any]) -> Counter[tuple[str, ...]]:
    out: Counter[tuple[str, ...]] = Counter()
    for ln in lines:
        key = (ln.holder_type, ln.governorate, ln.product, ln.period)
        for figure in ("holders", "base_qty", "granted_qty", "carried_qty"):
            out[(*key, figure)] += getattr(ln, figure)
    return out


def test_the_simulated_window_is_what_the_opening_then_grants_with_carry_over_and_points(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    setup(session_factory)
    zone, govs = settings.zone, settings.governorates
    # the first opening: every product, rolling ones included, as simulated just before
    first = simulate(session_factory, settings, NOV30)
    with session_factory.begin() as s:
        open_period(s, at=NOV30, governorates=govs, tz=zone)
    assert simulated(first["lines"]) == opened(session_factory, settings, NOV30)
    with session_factory.begin() as s:
        # family 1 used 500 g of its 2 kg of sugar, family 2 all its 4 kg, 3 and 4 nothing; every
        # family ate its bread of 30 November but family 3, which left one of its two bundles
        touch(s, "family", [1, 2, 3, 4], "sugar", NOV30)
        touch(s, "family", [1, 2, 3, 4], "bread", NOV30)
        s.execute(text("UPDATE allowances SET used_qty = granted_qty WHERE product_code = 'bread'"))
        for product, holder, used in (("sugar", 1, 500), ("sugar", 2, 4000), ("bread", 3, 1)):
            s.execute(
                text("UPDATE allowances SET used_qty = :u WHERE product_code = :p AND holder_id = :h"),
                {"u": used, "p": product, "h": holder},
            )

    dec = simulate(session_factory, settings, DEC1)
    totals = {(t.holder_type, t.product, t.period): t for t in dec["totals"]}
    sugar, bread = totals["family", "sugar", "month"], totals["family", "bread", "day"]
    # carry-over, capped at 1 kg: 1 kg (family 1) + 0 + 1 kg + 1 kg, drawable at the subsidised price
    assert (sugar.base_qty, sugar.carried_qty, sugar.granted_qty) == (13000, 3000, 16000)
    assert sugar.subsidy_minor == 16000 * SUGAR_GAP // 1000
    assert bread.points == 10  # family 3's unused bundle
    assert sugar.subsidy_minor_per_year == 12 * 13000 * SUGAR_GAP // 1000  # the rate, without the one-off
    # a proposal halving the carry cap shows the next window's carry-over going down
    half = [
        r.model_copy(update={"unused": r.unused.model_copy(update={"carry_cap_qty": 500})})
        if r.code == "sugar_family"
        else r
        for r in demo_ruleset().rules
    ]
    cmp = simulate(session_factory, settings, DEC1, half)
    diff = {(d.holder_type, d.product): d for d in cmp["difference_totals"]}
    assert diff["family", "sugar"].carried_qty == 3 * 500 - 3000
    assert diff["family", "sugar"].granted_qty_per_year == 0

    with session_factory.begin() as s:
        open_period(s, at=DEC1, governorates=govs, tz=zone)
    got = opened(session_factory, settings, DEC1)
    want = simulated(dec["lines"])
    calendar = {k: v for k, v in want.items() if not k[3].startswith("rolling_")}  # rolling: refreshed only
    assert calendar == {k: v for k, v in got.items() if not k[3].startswith("rolling_")}
    with session_factory() as s:
        points = allowance_rows(s, "family", sorted(FAMILIES), "points")
    assert sum(r["granted_qty"] for r in points) == bread.points


def test_a_period_edit_shows_in_the_difference_and_periods_are_named(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as s:
        seed_registry(s)
        seed_rules(s)
    proposed = []
    for r in demo_ruleset().rules:
        body = r.model_dump(mode="json")
        if r.code == "gas_cylinder_family":
            body["period"] = {"kind": "rolling", "days": 45}
        if r.code == "sugar_family":
            body["period"] = {"kind": "quarter"}
        proposed.append(body)
    r = client.post(
        "/api/v1/rules/simulate", json={"rules": proposed, "at": NOV.isoformat()}, headers=auth(Role.AUDITOR)
    )
    assert r.status_code == 200, r.text
    out = r.json()
    diff = {(d["holder_type"], d["product"]): d for d in out["difference_totals"]}
    gas = diff["family", "gas_cylinder"]
    assert (gas["current_periods"], gas["proposed_periods"]) == (["rolling_23d"], ["rolling_45d"])
    assert gas["holders"] == 0
    # two families in each of damascus and homs, a cylinder a window: 365/23 → 365/45 windows a year
    assert gas["granted_qty_per_year"] == 2 * (2 * 365 // 45 - 2 * 365 // 23)
    assert gas["subsidy_minor_per_year"] == 2 * (2 * GAS_GAP * 365 // 45 - 2 * GAS_GAP * 365 // 23) < 0
    sugar = diff["family", "sugar"]
    assert (sugar["current_periods"], sugar["proposed_periods"]) == (["month"], ["quarter"])
    assert sugar["base_qty_per_year"] == 13000 * 4 - 13000 * 12  # four windows a year instead of twelve
    assert sugar["subsidy_minor_per_year"] < 0
    changes = {(c["holder_type"], c["product"]): c for c in out["changes"]}
    assert changes["family", "gas_cylinder"] == {
        "holder_type": "family", "product": "gas_cylinder", "gained_holders": 0, "lost_holders": 0,
        "changed_holders": 4,
    }  # fmt: skip
    assert changes["family", "sugar"]["changed_holders"] == 4
    assert changes["family", "rice"]["changed_holders"] == 0
    # government gasoline (800 L a month) and private gasoline (20 L every 7 days) are two lines
    gasoline = {x["period"]: x for x in out["lines"] if x["product"] == "gasoline"}
    assert sorted(gasoline) == ["month", "rolling_7d"]
    assert (gasoline["month"]["holders"], gasoline["month"]["base_qty"]) == (1, 800_000)
    assert gasoline["month"]["base_qty_per_year"] == 12 * 800_000
    assert (gasoline["rolling_7d"]["holders"], gasoline["rolling_7d"]["base_qty"]) == (2, 40_000)
    assert gasoline["rolling_7d"]["windows_per_year"] == 365 / 7


def test_families_and_persons_are_kept_apart(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    setup(session_factory)
    rules = list(demo_ruleset().rules)
    tea = next(r for r in rules if r.code == "tea_family")
    per_person = tea.model_copy(
        update={
            "code": "tea_person",
            "holder_type": "person",
            "amount": tea.amount.model_copy(update={"per_member_qty": 0, "base_qty": 200, "cap_qty": None}),
        }
    )
    proposed = [r for r in rules if r.code != "tea_family"] + [per_person]
    out = simulate(session_factory, settings, NOV, proposed)
    tea_lines = {(d.holder_type, d.governorate): d for d in out["difference"] if d.product == "tea"}
    # families 1, 2 (damascus) and 3, 4 (homs) lose tea; their 2 + 5 and 3 + 8 living members gain it
    assert {k: d.holders for k, d in tea_lines.items()} == {
        ("family", "damascus"): -2, ("family", "homs"): -2, ("person", "damascus"): 7, ("person", "homs"): 11,
    }  # fmt: skip
    assert tea_lines["person", "homs"].base_qty_per_year == 11 * 200 * 12
    assert tea_lines["family", "homs"].proposed_periods == ()  # no family line for tea any more
    assert tea_lines["person", "homs"].current_periods == ()
    changes = {(c.holder_type, c.product): (c.gained_holders, c.lost_holders) for c in out["changes"]}
    assert changes["family", "tea"] == (0, 4) and changes["person", "tea"] == (18, 0)
    assert all(ln.holder_type == "person" for ln in out["lines"] if ln.product == "tea")
