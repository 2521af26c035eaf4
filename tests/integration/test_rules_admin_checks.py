"""What an administrator may save as a rule or a product, through the real app on SQLite and PostgreSQL.

From an audit with probes: a points policy crediting a product that does not exist (or gasoline), a
``governorate_in`` typo matching nobody, a code moved to another product or holder type, concurrent
saves stacked as versions of another administrator's rule (or answered with raw database text), an
identical PUT making a copy the next opening moved every rolling allowance to, rule files skipping
the product checks, products created with values PostgreSQL refuses, a unit change racing a new rule,
and a listing that did not say which version is in force. Every refusal is one JSON error with a 4xx
status, and nothing is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from card_backend.auth.principal import Role
from card_backend.config import Settings
from quota import rules_repository
from quota.domain.rules import ruleset_from_yaml
from quota.models import Product, RuleVersion
from tests.integration.rules_seed import demo_ruleset, seed_registry
from tests.integration.test_rules_api import load_demo

Auth = Callable[..., dict[str, str]]
NOV = "2026-11-18T12:00:00+00:00"
NOV_NEXT_DAY = "2026-11-19T12:00:00+00:00"


def demo(rule: str, /, **changes: Any) -> dict[str, Any]:
    body = next(r for r in demo_ruleset().rules if r.code == rule).model_dump(mode="json")
    return {**body, **changes}


def stored(engine: Engine, code: str) -> list[tuple[int, str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(RuleVersion.version, RuleVersion.product_code, RuleVersion.holder_type,
                   RuleVersion.created_by)
            .where(RuleVersion.code == code)
            .order_by(RuleVersion.version)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def refused(r: httpx.Response, status: int, code: str) -> Any:
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert set(r.json()) == {"error", "detail"}
    return r.json()["detail"]


def patch(client: TestClient, code: str, headers: dict[str, str], **fields: Any) -> httpx.Response:
    return client.patch(f"/api/v1/products/{code}", json=fields, headers=headers)


# 1. the points product ----------------------------------------------------------------------------
def test_points_are_credited_only_in_an_existing_active_point_product(
    client: TestClient, auth: Auth, engine: Engine
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    points = {"policy": "points", "points_per_qty": 1}
    put = lambda **unused: client.put(  # noqa: E731
        "/api/v1/rules/rice_family", json=demo("rice_family", unused={**points, **unused}), headers=admin
    )
    detail = refused(put(points_product="caviar"), 422, "unknown_product")
    assert "caviar" in detail
    detail = refused(put(points_product="gasoline"), 422, "not_a_points_product")  # unused rice → petrol
    assert "gasoline" in detail and "'ml'" in detail
    new = {"code": "stars", "name_ar": "نجوم", "name_en": "Stars", "unit": "point"}
    assert client.post("/api/v1/products", json=new, headers=admin).status_code == 201
    assert patch(client, "stars", admin, active=False).status_code == 200
    refused(put(points_product="stars"), 409, "product_inactive")
    # a new rule is checked the same way
    body = demo("rice_family", code="rice_points", unused={**points, "points_product": "caviar"})
    refused(client.post("/api/v1/rules", json=body, headers=admin), 422, "unknown_product")
    assert stored(engine, "rice_family") == [(1, "rice", "family", "user:admin1")]
    assert stored(engine, "rice_points") == []
    # a simulated proposal names real products too
    r = client.post("/api/v1/rules/simulate", json={"rules": [body], "at": NOV}, headers=admin)
    refused(r, 422, "unknown_product")
    # the real points product is fine
    assert put(points_product="points").status_code == 201
    # a rule already crediting a withdrawn points product may still be versioned (e.g. ended)
    assert patch(client, "points", admin, active=False).status_code == 200
    r = client.put("/api/v1/rules/bread_family", json=demo("bread_family", effective_to="2026-12-31"),
                   headers=admin)
    assert r.status_code == 201, r.text


# 2. governorates ----------------------------------------------------------------------------------
def test_governorate_names_are_the_deployments(
    client: TestClient, auth: Auth, engine: Engine, app: Any
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    sugar = demo("sugar_family")
    names = ["damscus", "homs", "Damascus"]
    typo = {**sugar, "eligibility": {**sugar["eligibility"], "governorate_in": names}}
    r = client.put("/api/v1/rules/sugar_family", json=typo, headers=admin)
    detail = refused(r, 422, "unknown_governorate")
    assert detail["unknown"] == ["damscus", "Damascus"] and "damascus" in detail["allowed"]
    refused(client.post("/api/v1/rules", json={**typo, "code": "sugar_typo"}, headers=admin), 422,
            "unknown_governorate")
    r = client.post("/api/v1/rules/simulate", json={"rules": [typo], "at": NOV}, headers=admin)
    refused(r, 422, "unknown_governorate")
    assert stored(engine, "sugar_family") == [(1, "sugar", "family", "user:admin1")]
    assert stored(engine, "sugar_typo") == []
    right = {**sugar, "eligibility": {**sugar["eligibility"], "governorate_in": ["damascus", "homs"]}}
    assert client.put("/api/v1/rules/sugar_family", json=right, headers=admin).status_code == 201
    # another deployment's list is the authority, not Syria's
    settings: Settings = app.state.settings
    app.state.settings = settings.model_copy(update={"governorates": ("north", "south")})
    try:
        right = {**right, "description": "elsewhere"}
        detail = refused(client.put("/api/v1/rules/sugar_family", json=right, headers=admin), 422,
                         "unknown_governorate")
        assert detail["unknown"] == ["damascus", "homs"] and detail["allowed"] == ["north", "south"]
    finally:
        app.state.settings = settings


# 3. a code keeps its product and holder type -------------------------------------------------------
def test_a_code_keeps_its_product_and_holder_type(client: TestClient, auth: Auth, engine: Engine) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    for change in ({"product": "rice"}, {"product": "tea", "priority": 1}, {"holder_type": "person"}):
        r = client.put("/api/v1/rules/sugar_family", json=demo("sugar_family", **change), headers=admin)
        assert "new code" in refused(r, 409, "rule_identity_changed")
    assert stored(engine, "sugar_family") == [(1, "sugar", "family", "user:admin1")]
    # a new code on another product is the way
    r = client.post("/api/v1/rules", json=demo("sugar_family", code="sugar_as_rice", product="rice"),
                    headers=admin)
    assert r.status_code == 201 and r.json()["version"] == 1


# 4. concurrent saves ------------------------------------------------------------------------------
@contextmanager
def competing_version(engine: Engine, code: str, version: int, body: dict[str, Any]) -> Iterator[list[bool]]:
    """Just before the request inserts its rule version, another administrator's version ``version`` of
    ``code`` is committed from another connection: the request loses the race at the unique constraint,
    whatever locks it took before (its own reads came first)."""
    fired: list[bool] = []

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if fired or not statement.lstrip().upper().startswith("INSERT INTO RULE_VERSIONS"):
            return
        fired.append(True)
        with engine.begin() as other:
            other.execute(insert(RuleVersion), [{
                "code": code, "version": version, "product_code": body["product"],
                "holder_type": body["holder_type"], "body": body,
                "effective_from": date.fromisoformat(body["effective_from"]),
                "created_by": "user:other",
            }])  # fmt: skip

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", before)


def test_a_post_that_loses_the_race_for_a_new_code_is_rule_exists(
    client: TestClient, auth: Auth, engine: Engine
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    theirs = demo("sugar_family", code="sugar_new", description="the other admin's")
    mine = demo("sugar_family", code="sugar_new", description="mine")
    with competing_version(engine, "sugar_new", 1, theirs) as fired:
        r = client.post("/api/v1/rules", json=mine, headers=admin)
    assert fired
    assert "PUT" in refused(r, 409, "rule_exists")
    # mine is not stacked as version 2 of theirs
    assert stored(engine, "sugar_new") == [(1, "sugar", "family", "user:other")]


def test_a_put_that_loses_the_race_is_rule_edit_conflict(
    client: TestClient, auth: Auth, engine: Engine
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    theirs = demo("sugar_family", description="the other admin's edit")
    with competing_version(engine, "sugar_family", 2, theirs) as fired:
        r = client.put("/api/v1/rules/sugar_family", json=demo("sugar_family", description="mine"),
                       headers=admin)
    assert fired
    detail = refused(r, 409, "rule_edit_conflict")
    assert "version 1" in detail and "constraint" not in detail.lower()
    assert [v[3] for v in stored(engine, "sugar_family")] == ["user:admin1", "user:other"]
    # redone on the newest version, the edit is stored
    r = client.put("/api/v1/rules/sugar_family", json=demo("sugar_family", description="mine"), headers=admin)
    assert r.status_code == 201 and r.json()["version"] == 3


def test_an_edit_made_on_an_older_version_is_refused_when_it_says_so(
    client: TestClient, auth: Auth, engine: Engine
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    first = client.put("/api/v1/rules/sugar_family",
                       json={**demo("sugar_family", description="A"), "expected_version": 1}, headers=admin)
    assert first.status_code == 201 and first.json()["version"] == 2
    assert "expected_version" not in first.json()["body"]
    late = client.put("/api/v1/rules/sugar_family",
                      json={**demo("sugar_family", description="B"), "expected_version": 1}, headers=admin)
    assert "version 2" in refused(late, 409, "rule_edit_conflict")
    # a retry of the edit that was stored is not a conflict: nothing new, 200
    again = client.put("/api/v1/rules/sugar_family",
                       json={**demo("sugar_family", description="A"), "expected_version": 1}, headers=admin)
    assert again.status_code == 200 and again.json()["version"] == 2
    redone = client.put("/api/v1/rules/sugar_family",
                        json={**demo("sugar_family", description="B"), "expected_version": 2}, headers=admin)
    assert redone.status_code == 201 and redone.json()["version"] == 3
    assert len(stored(engine, "sugar_family")) == 3


def race(app: Any, n: int, send: Callable[[TestClient, int], httpx.Response]) -> list[httpx.Response]:
    """``n`` requests at once, each from its own client (and so its own session and connection)."""
    clients = [TestClient(app, raise_server_exceptions=False) for _ in range(n)]
    barrier = threading.Barrier(n)
    out: list[httpx.Response | None] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        out[i] = send(clients[i], i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def answers(responses: list[httpx.Response]) -> list[tuple[int, str]]:
    return sorted((r.status_code, r.json().get("error", "")) for r in responses)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_concurrent_posts_of_one_new_code_make_one_rule(
    client: TestClient, auth: Auth, engine: Engine, app: Any
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    n = 6
    for round_ in range(5):
        code = f"race_{round_}"
        out = race(app, n, lambda c, i, code=code: c.post(  # type: ignore[misc]
            "/api/v1/rules", json=demo("sugar_family", code=code, description=f"admin {i}"), headers=admin
        ))  # fmt: skip
        assert answers(out) == [(201, "")] + [(409, "rule_exists")] * (n - 1), [r.text for r in out]
        (won,) = [r for r in out if r.status_code == 201]
        assert stored(engine, code) == [(1, "sugar", "family", "user:admin1")]
        with engine.connect() as conn:
            body = conn.scalar(select(RuleVersion.body).where(RuleVersion.code == code))
        assert body["description"] == won.json()["body"]["description"]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_concurrent_puts_store_one_version_each_and_losers_are_told(
    client: TestClient, auth: Auth, engine: Engine, app: Any
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    n, made = 6, 0
    for round_ in range(5):
        out = race(app, n, lambda c, i, round_=round_: c.put(  # type: ignore[misc]
            "/api/v1/rules/sugar_family", json=demo("sugar_family", description=f"round {round_} admin {i}"),
            headers=admin,
        ))  # fmt: skip
        codes = answers(out)
        assert set(codes) <= {(201, ""), (409, "rule_edit_conflict")}, [r.text for r in out]
        won = [r.json()["version"] for r in out if r.status_code == 201]
        assert won, codes
        made += len(won)
        for r in out:
            if r.status_code == 409:
                assert "constraint" not in r.text.lower()
    versions = [v[0] for v in stored(engine, "sugar_family")]
    assert versions == list(range(1, made + 2))


# 5. an identical PUT -----------------------------------------------------------------------------
def test_a_put_identical_to_the_newest_version_stores_nothing(
    client: TestClient, auth: Auth, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    admin = auth(Role.ADMIN)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    first = client.post("/api/v1/periods/open", json={"at": NOV}, headers=admin)
    assert first.status_code == 200, first.text
    (opened,) = [o for o in first.json()["opened"] if o["rule_code"] == "gas_cylinder_family"]
    assert opened["rows"] > 0
    gas = demo("gas_cylinder_family")
    for _ in range(2):
        r = client.put("/api/v1/rules/gas_cylinder_family", json=gas, headers=admin)
        assert r.status_code == 200 and r.json()["version"] == 1, r.text
        assert r.json()["id"] == opened["rule_version_id"]
    assert len(stored(engine, "gas_cylinder_family")) == 1
    # the next day's opening has no new version to move every rolling allowance to
    r = client.post("/api/v1/periods/open", json={"at": NOV_NEXT_DAY}, headers=admin)
    assert r.status_code == 200, r.text
    gas_next = [o for o in r.json()["opened"] if o["product"] == "gas_cylinder"]
    assert gas_next
    assert {(o["rule_version_id"], o["rows"]) for o in gas_next} == {(opened["rule_version_id"], 0)}
    # identical to the newest, not to any version: going back to version 1's body is a change
    changed = {**gas, "description": "changed"}
    assert client.put("/api/v1/rules/gas_cylinder_family", json=changed, headers=admin).json()["version"] == 2
    assert client.put("/api/v1/rules/gas_cylinder_family", json=changed, headers=admin).status_code == 200
    r = client.put("/api/v1/rules/gas_cylinder_family", json=gas, headers=admin)
    assert r.status_code == 201 and r.json()["version"] == 3


# 6. rule files ------------------------------------------------------------------------------------
RULE_FILE = """
products:
  - {{code: lentils, name_ar: عدس, name_en: Lentils, unit: g, price_per_qty: 1000}}
rules:
  - code: {code}
    product: {product}
    holder_type: family
    eligibility: {eligibility}
    amount: {{base_qty: 1000}}
    period: {{kind: month}}
    tiers: [{{name: subsidised, price_minor: 100}}]
    effective_from: 2026-01-01
"""


def rule_file(code: str, product: str, eligibility: str = "{}") -> str:
    return RULE_FILE.format(code=code, product=product, eligibility=eligibility)


def test_a_rule_file_is_checked_as_the_api_checks_rules(session_factory: sessionmaker[Session]) -> None:
    with session_factory.begin() as s:
        rules_repository.install_demo(s)
        s.execute(text("UPDATE products SET active = false WHERE code = 'tea'"))
    cases = [
        (rule_file("caviar_family", "caviar"), "unknown_product"),
        (rule_file("tea_new", "tea"), "product_inactive"),
        (rule_file("sugar_family", "rice"), "rule_identity_changed"),
        (rule_file("lentils_damascus", "lentils", "{governorate_in: [damscus]}"), "unknown_governorate"),
    ]
    for text_, code in cases:
        ruleset = ruleset_from_yaml(text_)
        with pytest.raises(rules_repository.RuleRefused) as refusal, session_factory.begin() as s:
            rules_repository.install(s, ruleset, "cardctl", ("damascus", "homs"))
        assert refusal.value.code == code, refusal.value
    with session_factory() as s:
        # the whole file was refused: not even its new product was added
        assert s.get(Product, "lentils") is None
        assert s.scalar(select(RuleVersion.id).where(RuleVersion.code.in_(
            ["caviar_family", "tea_new", "lentils_damascus"]))) is None  # fmt: skip
        assert {v.product_code for v in rules_repository.versions(s, "sugar_family")} == {"sugar"}
    # a correct file loads, its product first
    with session_factory.begin() as s:
        ruleset = ruleset_from_yaml(rule_file("lentils_damascus", "lentils", "{governorate_in: [damascus]}"))
        assert rules_repository.install(s, ruleset, "cardctl", ("damascus", "homs")) == (1, 1)


def test_cardctl_rules_load_refuses_a_bad_file_with_a_message(
    engine: Engine, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, session_factory: sessionmaker[Session]
) -> None:
    from card_backend.cli import app
    from card_backend.config import get_settings

    monkeypatch.setenv("CARD_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    get_settings.cache_clear()
    try:
        path = tmp_path / "rules.yaml"
        path.write_text(rule_file("caviar_family", "caviar"), encoding="utf-8")
        result = CliRunner().invoke(app, ["rules", "load", str(path)])
        assert result.exit_code == 1, result.output
        assert "unknown_product" in result.output and "caviar" in result.output
        assert "Traceback" not in result.output
        with session_factory() as s:
            assert s.get(Product, "lentils") is None
    finally:
        get_settings.cache_clear()


# 7. product creation ------------------------------------------------------------------------------
def test_a_new_product_is_bounded_as_a_correction_is(client: TestClient, auth: Auth, engine: Engine) -> None:
    admin = auth(Role.ADMIN)
    oil = {"code": "oil", "name_ar": "زيت", "name_en": "Oil", "unit": "ml", "price_per_qty": 1000}
    for field, value in [
        ("name_ar", ""),
        ("name_en", ""),
        ("name_en", "x" * 300),
        ("name_en", "a\u0000b"),
        ("name_ar", "a\u001fb"),
        ("price_per_qty", 2**31),
        ("price_per_qty", 0),
        ("free_price_minor", 2**63),
        ("free_price_minor", -1),
    ]:
        r = client.post("/api/v1/products", json={**oil, field: value}, headers=admin)
        detail = refused(r, 422, "validation_error")
        assert [d["loc"] for d in detail] == [["body", field]], (field, detail)
    with engine.connect() as conn:
        assert conn.scalar(select(Product.code).where(Product.code == "oil")) is None
    r = client.post("/api/v1/products", json={**oil, "name_en": "x" * 80, "price_per_qty": 2**31 - 1},
                    headers=admin)
    assert r.status_code == 201, r.text


# 8. a unit change waits for a rule being saved on the product --------------------------------------
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_unit_correction_waits_for_a_rule_being_saved_and_then_sees_it(
    client: TestClient, auth: Auth, engine: Engine, app: Any
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    oil = {"code": "oil", "name_ar": "زيت", "name_en": "Oil", "unit": "ml", "price_per_qty": 1000}
    assert client.post("/api/v1/products", json=oil, headers=admin).status_code == 201
    rule = demo("sugar_family", code="oil_family", product="oil", amount={"base_qty": 2000},
                tiers=[{"name": "subsidised", "price_minor": 800}])  # 800 per litre
    outcome: dict[str, Any] = {}
    waited: list[bool] = []

    def correct_unit() -> None:
        outcome["patch"] = patch(TestClient(app, raise_server_exceptions=False), "oil", admin,
                                 unit="g", price_per_qty=1)

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        # the rule's request has read the product and is about to insert its version: a correction of
        # the product's unit starts now, and must wait for this transaction
        if waited or not statement.lstrip().upper().startswith("INSERT INTO RULE_VERSIONS"):
            return
        waited.append(False)
        patcher = threading.Thread(target=correct_unit)
        patcher.start()
        outcome["patcher"] = patcher
        deadline = time.monotonic() + 10
        with engine.connect() as probe:
            while time.monotonic() < deadline and patcher.is_alive():
                blocked = probe.scalar(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND cardinality(pg_blocking_pids(pid)) > 0"
                ))  # fmt: skip
                if blocked:
                    waited[0] = True
                    return
                time.sleep(0.02)

    event.listen(engine, "before_cursor_execute", before)
    try:
        r = client.post("/api/v1/rules", json=rule, headers=admin)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert r.status_code == 201, r.text
    outcome["patcher"].join(30)
    assert waited == [True], f"the correction did not wait for the rule being saved: {outcome['patch'].text}"
    detail = refused(outcome["patch"], 409, "product_in_use")
    assert "rule versions" in detail
    with engine.connect() as conn:
        assert conn.execute(text("SELECT unit, price_per_qty FROM products WHERE code = 'oil'")).one() == (
            "ml", 1000,
        )  # fmt: skip


# 9. the listing tells what is in force -----------------------------------------------------------
def test_the_listing_tells_which_version_is_in_force_today(
    client: TestClient, auth: Auth, settings: Settings
) -> None:
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    load_demo(client, admin)
    today = datetime.now(settings.zone).date()
    listed = client.get("/api/v1/rules", headers=auditor).json()
    assert all(r["in_force"] and r["version_in_force"] == 1 for r in listed)
    # sugar: a change scheduled ahead; rice: ended ten days ago; tea: its product withdrawn
    scheduled = demo("sugar_family", effective_from=str(today + timedelta(days=30)))
    ahead = client.put("/api/v1/rules/sugar_family", json=scheduled, headers=admin)
    assert ahead.status_code == 201
    assert (ahead.json()["in_force"], ahead.json()["version_in_force"]) == (False, 1)
    ended = demo("rice_family", effective_to=str(today - timedelta(days=10)))
    assert client.put("/api/v1/rules/rice_family", json=ended, headers=admin).status_code == 201
    assert patch(client, "tea", admin, active=False).status_code == 200
    listed = {r["code"]: r for r in client.get("/api/v1/rules", headers=auditor).json()}
    shown = {c: (listed[c]["version"], listed[c]["in_force"], listed[c]["version_in_force"])
             for c in ("sugar_family", "rice_family", "tea_family", "bread_family")}
    assert shown == {
        "sugar_family": (2, False, 1),
        "rice_family": (2, False, None),
        "tea_family": (1, False, None),
        "bread_family": (1, True, 1),
    }
    every = client.get("/api/v1/rules", params={"all_versions": True}, headers=auditor).json()
    sugar = [(r["version"], r["in_force"], r["version_in_force"])
             for r in every if r["code"] == "sugar_family"]
    assert sugar == [(1, True, 1), (2, False, 1)]
    one = client.get("/api/v1/rules/sugar_family", headers=auditor).json()
    assert [(r["version"], r["in_force"]) for r in one] == [(1, True), (2, False)]
