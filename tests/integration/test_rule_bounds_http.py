"""A rule with an absurd number is refused at the door (422 JSON) and the system keeps working.

Before the bounds, ``base_qty: 10**30`` was stored (201) and every later opening, simulation and
explain answered a plain-text 500 (``OverflowError`` in numpy), for every product.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from tests.integration.rules_seed import allowance_rows, demo_ruleset, seed_registry

NOV = "2026-11-18T12:00:00+00:00"


def test_a_huge_base_qty_is_refused_and_changes_nothing(
    client: TestClient, auth: Callable[..., dict[str, str]], session_factory: sessionmaker[Session]
) -> None:
    admin = auth(Role.ADMIN)
    with session_factory.begin() as s:
        seed_registry(s)
    rs = demo_ruleset()
    for p in rs.products:
        assert client.post("/api/v1/products", json=p.model_dump(), headers=admin).status_code == 201
    for rule in rs.rules:
        assert (
            client.post("/api/v1/rules", json=rule.model_dump(mode="json"), headers=admin).status_code == 201
        )
    before = client.get("/api/v1/rules/sugar_family", headers=admin).json()

    body = next(r for r in rs.rules if r.code == "sugar_family").model_dump(mode="json")
    body["amount"] = {"base_qty": 10**30}
    r = client.put("/api/v1/rules/sugar_family", json=body, headers=admin)

    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "validation_error"
    (problem,) = r.json()["detail"]
    assert problem["loc"] == ["body", "amount", "base_qty"]
    assert "1000000000000" in problem["msg"]
    assert client.get("/api/v1/rules/sugar_family", headers=admin).json() == before  # still version 1
    with session_factory() as s:
        assert s.execute(text("SELECT count(*) FROM rule_versions WHERE code = 'sugar_family'")).scalar() == 1

    opened = client.post("/api/v1/periods/open", json={"at": NOV}, headers=admin)
    assert opened.status_code == 200, opened.text
    sugar = [o for o in opened.json()["opened"] if o["rule_code"] == "sugar_family"]
    assert sugar and sugar[0]["rows"] > 0
    with session_factory() as s:
        families = [int(i) for (i,) in s.execute(text("SELECT id FROM families ORDER BY id"))]
        granted = [r["granted_qty"] for r in allowance_rows(s, "family", families, "sugar")]
    assert granted and max(granted) == 4000  # the demo's cap: the refused version never took effect
