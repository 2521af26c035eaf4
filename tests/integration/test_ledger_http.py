"""The ledger over HTTP: status codes, refusal bodies, replay, roles, batch, quota, journal verify."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from card_backend.auth.principal import Role
from quota.redemption import Redemption
from tests.integration.ledger_seed import T0, Population, seed

NOW = T0 + timedelta(days=2)


def body(pop: Population, qty: int = 1000, **kw: object) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "card_serial": pop.family_card[1], "product_code": "sugar",
            "quantity_qty": qty, "point_code": "P1", **kw}


def test_redemption_ok_replay_and_refusals(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    clerk = auth(Role.CLERK)
    req = body(pop)
    r = client.post("/api/v1/redemptions", json=req, headers=clerk)
    assert r.status_code == 200 and r.json()["remaining_qty"] == 4000 and r.json()["price_minor"] == 350
    again = client.post("/api/v1/redemptions", json=req, headers=clerk)
    assert again.status_code == 200 and again.json()["replayed"] is True
    other = client.post("/api/v1/redemptions", json={**req, "quantity_qty": 5}, headers=clerk)
    assert other.status_code == 409 and other.json()["error"] == "exists_with_different_payload"
    over = client.post("/api/v1/redemptions", json=body(pop, 4001), headers=clerk)
    assert over.status_code == 409 and over.json()["error"] == "exceeds_allowance"
    assert over.json()["detail"]["remaining_qty"] == 4000
    bad = client.post("/api/v1/redemptions", json=body(pop, 0), headers=clerk)
    assert bad.status_code == 422
    assert client.post("/api/v1/redemptions", json=body(pop)).status_code == 401
    assert client.post("/api/v1/redemptions", json=body(pop), headers=auth(Role.AUDITOR)).status_code == 403


def test_batch_answers_per_item(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    items = [body(pop, 2000), body(pop, 2000), body(pop, 2000)]
    r = client.post("/api/v1/redemptions/batch", json={"items": items}, headers=auth(Role.CLERK))
    assert r.status_code == 200
    assert [x["result"] for x in r.json()["results"]] == ["ok", "ok", "exceeds_allowance"]


def test_hold_post_void_over_http(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    clerk = auth(Role.CLERK)
    hold = {**body(pop, 40_000), "product_code": "diesel"}
    assert client.post("/api/v1/holds", json=hold, headers=clerk).status_code == 200
    posted = client.post(f"/api/v1/holds/{hold['id']}/post", json={"quantity_qty": 20_000}, headers=clerk)
    assert posted.status_code == 200 and posted.json()["quantity_qty"] == 20_000
    voided = client.post(f"/api/v1/holds/{hold['id']}/void", headers=clerk)
    assert voided.json()["error"] == "hold_not_pending"
    assert client.post(f"/api/v1/holds/{uuid.uuid4()}/void", headers=clerk).status_code == 404


def test_reversal_needs_a_supervisor_and_a_reason(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    debit = client.post("/api/v1/redemptions", json=body(pop), headers=auth(Role.CLERK)).json()
    rev = {"id": str(uuid.uuid4()), "ref_entry_id": debit["id"], "reason": "pumped 20 L, debited 50 L"}
    assert client.post("/api/v1/reversals", json=rev, headers=auth(Role.CLERK)).status_code == 403
    assert client.post("/api/v1/reversals", json={**rev, "reason": ""}, headers=auth(Role.SUPERVISOR)) \
        .status_code == 422
    r = client.post("/api/v1/reversals", json=rev, headers=auth(Role.SUPERVISOR))
    assert r.status_code == 200 and r.json()["quantity_qty"] == -1000 and r.json()["remaining_qty"] == 5000


def test_topup_quota_stock_and_journal(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    top = {"id": str(uuid.uuid4()), "holder_type": "family", "holder_id": 1, "product_code": "diesel",
           "quantity_qty": 40_000, "reason": "travel top-up", "cap_qty": 40_000}
    assert client.post("/api/v1/topups", json=top, headers=auth(Role.CLERK)).status_code == 403
    assert client.post("/api/v1/topups", json=top, headers=auth(Role.REGISTRAR)).status_code == 200
    quota = client.get(f"/api/v1/cards/{pop.family_card[1]}/quota", headers=auth(Role.CLERK)).json()
    diesel = next(line for line in quota["lines"] if line["product_code"] == "diesel")
    assert diesel["granted_qty"] == 240_000
    supervisor = auth(Role.SUPERVISOR)
    d = client.post("/api/v1/stock/deliveries", headers=supervisor,
                    json={"id": str(uuid.uuid4()), "point_code": "P1", "product_code": "sugar",
                          "quantity_qty": 500})
    assert d.status_code == 201 and d.json()["balance_qty"] == 500
    assert client.post("/api/v1/redemptions", json=body(pop, 501), headers=auth(Role.CLERK)).json()["error"] \
        == "point_out_of_stock"
    report = client.get("/api/v1/stock/report", params={"point_code": "P1", "day_from": "2026-11-01",
                                                         "day_to": "2026-11-30"}, headers=supervisor)
    assert report.status_code == 200 and report.json()["balances"][0]["reconciled"] is True
    auditor = auth(Role.AUDITOR)
    sealed = client.post("/api/v1/journal/seal", headers=auditor).json()
    assert sealed["entries"] == 2
    v = client.get("/api/v1/journal/verify", headers=auditor).json()
    assert v["ok"] is True and v["entries_checked"] == 2
    draws = client.get("/api/v1/families/1/draws", headers=supervisor).json()
    assert [d["kind"] for d in draws] == ["topup"]


def test_a_clerk_of_one_point_cannot_redeem_at_another(client: TestClient, auth, pop: Population,  # type: ignore[no-untyped-def]
                                                       engine: Engine) -> None:
    with engine.connect() as conn:
        from sqlalchemy import text

        p1 = conn.execute(text("SELECT id FROM points WHERE code = 'P1'")).scalar_one()
    clerk = auth(Role.CLERK, point_id=p1)
    assert client.post("/api/v1/redemptions", json=body(pop), headers=clerk).status_code == 200
    r = client.post("/api/v1/redemptions", json=body(pop, point_code="P2"), headers=clerk)
    assert r.status_code == 403 and r.json()["error"] == "wrong_point"


def test_the_app_ledger_reads_rule_versions_and_stops_with_the_app(app, engine: Engine,  # type: ignore[no-untyped-def]
                                                                    make_user) -> None:
    import json
    from pathlib import Path

    import time_machine
    from sqlalchemy import text

    from quota.domain.rules import rules_from_yaml
    from quota.engine import EngineStopped
    from tests.conftest import PASSWORD

    pop = seed(engine)
    demo = Path(__file__).resolve().parents[2] / "quota" / "rulesets" / "demo.yaml"
    sugar = next(r for r in rules_from_yaml(demo.read_text()) if r.product == "sugar")
    with engine.begin() as conn:
        conn.execute(text("UPDATE rule_versions SET body = :b WHERE id = 1"),
                     {"b": json.dumps(sugar.model_dump(mode="json"))})
    with time_machine.travel(NOW, tick=True), TestClient(app) as c:
        name = make_user(Role.CLERK)
        token = c.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        r = c.post("/api/v1/redemptions", json=body(pop, 1000), headers=headers)
        assert r.status_code == 200 and r.json()["remaining_qty"] == 4000
        ledger_engine = app.state.ledger.engine
    with pytest.raises(EngineStopped):
        ledger_engine.submit(Redemption(str(uuid.uuid4()), pop.family_card[1], "sugar", 1, "P1"))


def test_binding_change_requested_over_http_is_counted_per_period(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population
) -> None:
    clerk, registrar = auth(Role.CLERK), auth(Role.REGISTRAR)
    first = body(pop, 20_000, product_code="diesel")
    assert client.post("/api/v1/redemptions", json=first, headers=clerk).json()["result"] == "ok"
    elsewhere = body(pop, 20_000, product_code="diesel", point_code="P2")
    refused = client.post("/api/v1/redemptions", json=elsewhere, headers=clerk)
    assert refused.status_code == 409 and refused.json()["error"] == "point_not_bound"

    def move(point: str) -> dict[str, object]:
        return {"id": str(uuid.uuid4()), "holder_type": "family", "holder_id": 1, "product_code": "diesel",
                "point_code": point}

    req = move("P2")
    moved = client.post("/api/v1/bindings", json=req, headers=registrar)
    assert moved.status_code == 200 and moved.json()["result"] == "ok"
    assert client.post("/api/v1/bindings", json=req, headers=registrar).json()["replayed"] is True
    again = client.post("/api/v1/bindings", json=move("P1"), headers=registrar)
    assert again.status_code == 409 and again.json()["error"] == "binding_changes_exhausted"
    quota = client.get(f"/api/v1/cards/{pop.family_card[1]}/quota", headers=clerk).json()
    assert {ln["product_code"]: ln["home_point_code"] for ln in quota["lines"]}["diesel"] == "P2"
    assert client.post("/api/v1/bindings", json=move("P1"), headers=auth(Role.AUDITOR)).status_code == 403


def test_an_undelivered_debit_is_credited_back_and_an_unarrived_one_can_never_debit(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population, engine: Engine
) -> None:
    """Reversal advice: a point lost the answer to a debit and handed nothing over."""
    from sqlalchemy import text

    def device(point: str) -> dict[str, str]:
        r = client.post(f"/api/v1/points/{point}/devices", json={"name": f"agent-{point}"},
                        headers=auth(Role.REGISTRAR))
        return {"Authorization": f"Bearer {r.json()['token']}"}

    agent, other = device("P1"), device("P2")
    with engine.connect() as conn:
        p1 = conn.execute(text("SELECT id FROM points WHERE code = 'P1'")).scalar_one()
    applied = body(pop, 1500)
    assert client.post("/api/v1/redemptions", json=applied, headers=agent).json()["remaining_qty"] == 3500
    url = f"/api/v1/redemptions/{applied['id']}/undelivered"
    wrong = client.post(url, headers=other)
    assert wrong.status_code == 403 and wrong.json()["error"] == "wrong_point"
    for role in (Role.CLERK, Role.SUPERVISOR):  # the agent's advice only: a clerk cannot un-hand goods
        assert client.post(url, headers=auth(role, point_id=p1)).status_code == 403
    r = client.post(url, headers=agent)
    assert r.status_code == 200 and r.json()["result"] == "ok" and r.json()["quantity_qty"] == -1500
    assert r.json()["remaining_qty"] == 5000
    again = client.post(url, headers=agent)  # repeated advice: the same reversal, not a second credit
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["remaining_qty"] == 5000

    lost = body(pop, 1000)  # the debit never arrived: its id is voided first
    r = client.post(f"/api/v1/redemptions/{lost['id']}/undelivered", headers=agent)
    assert r.status_code == 200 and r.json()["result"] == "voided"
    late = client.post("/api/v1/redemptions", json=lost, headers=agent)
    assert late.status_code == 409 and late.json()["error"] == "exists_with_different_payload"
    refused = body(pop, 9_000)
    assert client.post("/api/v1/redemptions", json=refused, headers=agent).status_code == 409
    r = client.post(f"/api/v1/redemptions/{refused['id']}/undelivered", headers=agent)
    assert r.status_code == 409 and r.json()["error"] == "not_debited"
    with engine.connect() as conn:
        used = conn.execute(text("SELECT used_qty FROM allowances WHERE product_code = 'sugar' "
                                 "AND holder_type = 'family' AND holder_id = 1")).scalar_one()
        kinds = conn.execute(text("SELECT kind, result FROM journal ORDER BY seq")).all()
    assert used == 0
    assert [tuple(k) for k in kinds] == [("redeem", "ok"), ("reverse", "ok"), ("void", "voided"),
                                         ("redeem", "exceeds_allowance")]
