"""Correcting and withdrawing products (PATCH /api/v1/products/{code}) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from quota.engine import GroupCommitEngine
from quota.redemption import StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, Population, seed
from tests.integration.rules_seed import demo_ruleset, seed_registry

Auth = Callable[..., dict[str, str]]
NOV = "2026-11-18T12:00:00+00:00"


def load_demo(client: TestClient, admin: dict[str, str]) -> None:
    rs = demo_ruleset()
    for p in rs.products:
        assert client.post("/api/v1/products", json=p.model_dump(), headers=admin).status_code == 201
    for rule in rs.rules:
        r = client.post("/api/v1/rules", json=rule.model_dump(mode="json"), headers=admin)
        assert r.status_code == 201, r.text


def patch(client: TestClient, code: str, headers: dict[str, str], **fields: Any) -> Any:
    return client.patch(f"/api/v1/products/{code}", json=fields, headers=headers)


def sugar_subsidy(client: TestClient, auditor: dict[str, str]) -> int:
    r = client.post("/api/v1/rules/simulate", json={"at": NOV}, headers=auditor)
    assert r.status_code == 200, r.text
    return sum(x["subsidy_minor"] for x in r.json()["lines"] if x["product"] == "sugar")


def test_an_admin_corrects_the_free_price_and_simulations_use_it(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session], capsys: pytest.CaptureFixture[str]
) -> None:
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    # demo sugar: 350 per kg on the card, 3,500 free; damascus families draw 2 + 3 kg
    before = sugar_subsidy(client, auditor)
    assert before > 0 and before % 3150 == 0
    capsys.readouterr()
    r = patch(client, "sugar", admin, free_price_minor=4000, name_en="White sugar")
    assert r.status_code == 200, r.text
    assert (r.json()["free_price_minor"], r.json()["name_en"], r.json()["unit"]) == (4000, "White sugar", "g")
    assert sugar_subsidy(client, auditor) == before // 3150 * 3650
    listed = {p["code"]: p for p in client.get("/api/v1/products", headers=auditor).json()}
    assert listed["sugar"]["free_price_minor"] == 4000 and listed["sugar"]["price_per_qty"] == 1000
    # visible to auditors: who changed what, from what to what
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"product_changed"' in x]
    assert len(lines) == 1
    assert lines[0]["actor"] == "user:admin1" and lines[0]["product"] == "sugar"
    assert lines[0]["changes"]["free_price_minor"] == {"old": 3500, "new": 4000}
    # the subsidised price is the rule's: its versions keep it, the product does not hold one
    versions = client.get("/api/v1/rules/sugar_family", headers=admin).json()
    assert len(versions) == 1 and versions[0]["body"]["tiers"][0]["price_minor"] == 350


def test_who_may_correct_and_what_is_refused(client: TestClient, auth: Auth) -> None:
    admin, supervisor = auth(Role.ADMIN), auth(Role.SUPERVISOR)
    load_demo(client, admin)
    r = patch(client, "sugar", supervisor, free_price_minor=1)
    assert (r.status_code, r.json()["error"]) == (403, "role_forbidden")
    assert patch(client, "sugar", {}, free_price_minor=1).status_code == 401
    r = patch(client, "caviar", admin, free_price_minor=1)
    assert (r.status_code, r.json()["error"]) == (404, "product_not_found")
    r = patch(client, "sugar", admin, free_price_minor=None)
    assert (r.status_code, r.json()["error"]) == (422, "validation_error")
    r = patch(client, "sugar", admin, price_per_qty=0)
    assert (r.status_code, r.json()["error"]) == (422, "validation_error")
    # a rule uses sugar: its unit and price basis say what the rule's quantities and prices mean
    for fields in ({"unit": "ml"}, {"price_per_qty": 1}):
        r = patch(client, "sugar", admin, **fields)
        assert (r.status_code, r.json()["error"]) == (409, "product_in_use"), r.text
        assert "rule versions" in r.json()["detail"]
    listed = {p["code"]: p for p in client.get("/api/v1/products", headers=admin).json()}
    assert listed["sugar"]["unit"] == "g"
    # unchanged values are no change; a product nothing names yet can still be fixed
    assert patch(client, "sugar", admin, unit="g", price_per_qty=1000).status_code == 200
    new = {"code": "lentils", "name_ar": "عدس", "name_en": "Lentils", "unit": "ml", "price_per_qty": 1}
    assert client.post("/api/v1/products", json=new, headers=admin).status_code == 201
    r = patch(client, "lentils", admin, unit="g", price_per_qty=1000)
    assert r.status_code == 200 and (r.json()["unit"], r.json()["price_per_qty"]) == ("g", 1000)


def test_a_withdrawn_product_takes_no_new_rule_and_opens_no_period(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    assert patch(client, "sugar", admin, active=False).json()["active"] is False
    sugar = next(r for r in demo_ruleset().rules if r.code == "sugar_family").model_dump(mode="json")
    r = client.post("/api/v1/rules", json={**sugar, "code": "sugar_again"}, headers=admin)
    assert (r.status_code, r.json()["error"]) == (409, "product_inactive")
    rice = next(r for r in demo_ruleset().rules if r.code == "rice_family").model_dump(mode="json")
    # an existing code cannot move onto it either (nor onto any other product: that is a new code)
    r = client.put("/api/v1/rules/rice_family", json={**rice, "product": "sugar"}, headers=admin)
    assert (r.status_code, r.json()["error"]) == (409, "rule_identity_changed")
    # a rule already on it may still be versioned (to end it)
    r = client.put("/api/v1/rules/sugar_family", json={**sugar, "effective_to": "2026-12-31"}, headers=admin)
    assert r.status_code == 201, r.text
    assert sugar_subsidy(client, auditor) == 0
    r = client.post("/api/v1/periods/open", json={"at": NOV}, headers=admin)
    assert r.status_code == 200, r.text
    assert "sugar" not in {o["product"] for o in r.json()["opened"]}
    assert "rice" in {o["product"] for o in r.json()["opened"]}
    # brought back: its rules are in force again
    assert patch(client, "sugar", admin, active=True).status_code == 200
    assert sugar_subsidy(client, auditor) > 0


@pytest.fixture
def pop(app, engine: Engine) -> Iterator[Population]:  # type: ignore[no-untyped-def]
    population = seed(engine)
    terms = StaticTerms(TERMS)
    now = T0 + timedelta(days=2)
    with GroupCommitEngine(engine, terms, clock=lambda: now) as eng:
        app.state.ledger = LedgerService(engine, terms, eng, hold_ttl_s=600, clock=lambda: now)
        yield population


def test_walk_in_sales_use_the_corrected_price_and_stop_when_withdrawn(
    client: TestClient, auth: Auth, engine: Engine, pop: Population
) -> None:
    with engine.connect() as conn:
        p1 = int(conn.execute(text("SELECT id FROM points WHERE code = 'P1'")).scalar_one())
    admin, clerk = auth(Role.ADMIN), auth(Role.CLERK, point_id=p1)

    def sell() -> Any:
        sale = {"id": str(uuid.uuid4()), "product_code": "sugar", "quantity_qty": 1000, "point_code": "P1"}
        return client.post("/api/v1/walk-in/sales", json=sale, headers=clerk)

    assert patch(client, "sugar", admin, walk_in=True, free_price_minor=2000).status_code == 200
    cap = client.put("/api/v1/walk-in/caps/sugar", json={"daily_cap_qty": 5000}, headers=admin)
    assert cap.status_code == 200, cap.text
    r = sell()
    assert r.status_code == 200, r.text
    assert r.json()["price_minor"] == 2000
    assert patch(client, "sugar", admin, free_price_minor=2500).status_code == 200
    assert sell().json()["price_minor"] == 2500  # per 1000 g, the next sale

    assert patch(client, "sugar", admin, active=False).status_code == 200
    r = sell()
    assert (r.status_code, r.json()["error"]) == (409, "product_unknown")
    # an allowance already opened stays redeemable until its period ends
    redemption = {"id": str(uuid.uuid4()), "card_serial": pop.family_card[1], "product_code": "sugar",
                  "quantity_qty": 1000, "point_code": "P1"}
    r = client.post("/api/v1/redemptions", json=redemption, headers=clerk)
    assert r.status_code == 200 and r.json()["result"] == "ok", r.text
