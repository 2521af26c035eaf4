"""The rules API on SQLite and PostgreSQL: products, versioned rules, simulate, explain, open, report."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.app import create_app
from card_backend.auth.principal import Role
from card_backend.config import Settings
from tests.integration.rules_seed import demo_ruleset, seed_registry, touch

Auth = Callable[..., dict[str, str]]
NOV = "2026-11-18T12:00:00+00:00"


def load_demo(client: TestClient, admin: dict[str, str]) -> None:
    rs = demo_ruleset()
    for p in rs.products:
        r = client.post("/api/v1/products", json=p.model_dump(), headers=admin)
        assert r.status_code == 201, r.text
    for rule in rs.rules:
        r = client.post("/api/v1/rules", json=rule.model_dump(mode="json"), headers=admin)
        assert r.status_code == 201, r.text


def sugar_body(**amount: Any) -> dict[str, Any]:
    body = next(r for r in demo_ruleset().rules if r.code == "sugar_family").model_dump(mode="json")
    body["amount"] = amount
    return body


def test_only_admins_write_rules_and_readers_read(client: TestClient, auth: Auth) -> None:
    admin, auditor, clerk = auth(Role.ADMIN), auth(Role.AUDITOR), auth(Role.CLERK)
    load_demo(client, admin)
    assert client.post("/api/v1/rules", json=sugar_body(per_member_qty=1), headers=auditor).status_code == 403
    assert client.get("/api/v1/rules", headers=clerk).status_code == 403
    listed = client.get("/api/v1/rules", headers=auditor).json()
    assert len(listed) == len(demo_ruleset().rules) and all(r["version"] == 1 for r in listed)
    assert client.get("/api/v1/products", headers=auditor).status_code == 200
    assert client.get("/api/v1/rules").status_code == 401


def test_editing_a_rule_makes_a_new_version(client: TestClient, auth: Auth) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    r = client.put(
        "/api/v1/rules/sugar_family", json=sugar_body(per_member_qty=500, cap_qty=2000), headers=admin
    )
    assert r.status_code == 201 and r.json()["version"] == 2
    versions = client.get("/api/v1/rules/sugar_family", headers=admin).json()
    assert [v["body"]["amount"].get("cap_qty") for v in versions] == [4000, 2000]
    dup = client.post("/api/v1/rules", json=sugar_body(per_member_qty=1), headers=admin)
    assert dup.status_code == 409 and dup.json()["error"] == "rule_exists"
    wrong = client.put("/api/v1/rules/rice_family", json=sugar_body(per_member_qty=1), headers=admin)
    assert wrong.status_code == 422 and wrong.json()["error"] == "rule_code_mismatch"
    missing = client.put(
        "/api/v1/rules/nothing", json={**sugar_body(per_member_qty=1), "code": "nothing"}, headers=admin
    )
    assert missing.status_code == 404


def test_malformed_rules_are_refused(client: TestClient, auth: Auth) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    bad = sugar_body(per_member_qty="1000")  # a string where an int belongs
    assert client.put("/api/v1/rules/sugar_family", json=bad, headers=admin).status_code == 422
    unknown = {**sugar_body(per_member_qty=1), "code": "caviar", "product": "caviar"}
    r = client.post("/api/v1/rules", json=unknown, headers=admin)
    assert r.status_code == 422 and r.json()["error"] == "unknown_product"


def test_simulate_a_proposed_change_against_the_current_rules(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    proposed = [sugar_body(per_member_qty=1000, cap_qty=3000)]
    r = client.post("/api/v1/rules/simulate", json={"rules": proposed, "at": NOV}, headers=auditor)
    assert r.status_code == 200, r.text
    out = r.json()
    lines = {(x["governorate"], x["product"]): x for x in out["lines"]}
    # families 1 (2 members) and 2 (5) in damascus: 2 + 3 (cap) kg; subsidy (3500 - 350) per kg
    assert lines[("damascus", "sugar")]["base_qty"] == 5000
    assert lines[("damascus", "sugar")]["subsidy_minor"] == 5 * 3150
    diff = {(x["governorate"], x["product"]): x["base_qty_per_year"] for x in out["difference"]}
    # per year: a kilo less a month in each governorate, a bundle a day
    assert diff[("damascus", "sugar")] == -1000 * 12 and diff[("homs", "sugar")] == -1000 * 12
    assert diff[("homs", "bread")] == (-4 - 2) * 365  # the proposal has no bread rule
    # nothing was written
    with session_factory() as s:
        assert s.execute(text("SELECT count(*) FROM allowances")).scalar() == 0
        assert s.execute(text("SELECT count(*) FROM grant_runs")).scalar() == 0


def test_open_then_explain_a_holder(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    admin, supervisor = auth(Role.ADMIN), auth(Role.SUPERVISOR)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    assert client.post("/api/v1/periods/open", json={"at": NOV}, headers=supervisor).status_code == 403
    r = client.post("/api/v1/periods/open", json={"at": NOV}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] > 0
    # the government car has drawn 50 L an hour ago: the gap decides the next answer
    with session_factory.begin() as s:
        touch(s, "vehicle", [4], "gasoline", datetime.fromisoformat(NOV))
        s.execute(
            text(
                "UPDATE allowances SET used_qty = 50000, last_redeemed_at = :t WHERE holder_type = 'vehicle' "
                "AND holder_id = 4"
            ),
            {"t": "2026-11-18 11:00:00+00:00"},
        )
    r = client.get("/api/v1/holders/vehicle/4/explain", params={"at": NOV}, headers=supervisor)
    assert r.status_code == 200, r.text
    gov = {e["rule"]: e for e in r.json()}["gasoline_government"]
    assert gov["applies"] is True and gov["allowance"]["gap"]["too_soon"] is True
    assert gov["allowance"]["remaining_qty"] == 750_000
    car = {
        e["rule"]: e
        for e in client.get(
            "/api/v1/holders/vehicle/3/explain", params={"at": NOV}, headers=supervisor
        ).json()
    }
    licence = next(p for p in car["gasoline_large_car"]["predicates"] if p["name"] == "licence_valid")
    assert licence == {"name": "licence_valid", "required": "true", "value": False, "passed": False}
    assert client.get("/api/v1/holders/family/999/explain", headers=supervisor).status_code == 404


def test_unserved_report_lists_families_that_drew_no_heating_oil(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    admin = auth(Role.ADMIN)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    assert (
        client.post(
            "/api/v1/periods/open", json={"at": "2025-11-01T12:00:00+00:00"}, headers=admin
        ).status_code
        == 200
    )
    with session_factory.begin() as s:
        touch(s, "family", [1, 3], "heating_diesel", datetime(2025, 11, 1, 12, tzinfo=UTC))
        s.execute(
            text(
                "UPDATE allowances SET used_qty = 100000 WHERE product_code = 'heating_diesel' "
                "AND holder_id IN (1, 3)"
            )
        )
    r = client.get("/api/v1/batches/unserved", params={"product": "heating_diesel", "at": NOV}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["holder_ids"] == [2, 4]
    assert r.json()["period_start"].startswith("2025-10-15")
    with session_factory.begin() as s:  # the season's grants pruned (retention): no list missing the unserved
        s.execute(text("UPDATE period_openings SET grants_pruned_at = '2026-12-01T00:00:00+00:00' "
                       "WHERE product_code = 'heating_diesel'"))
    r = client.get("/api/v1/batches/unserved", params={"product": "heating_diesel", "at": NOV}, headers=admin)
    assert r.status_code == 409 and r.json()["error"] == "season_grants_pruned", r.text


def test_a_period_key_opens_from_its_first_day_and_a_bad_one_is_refused(
    client: TestClient, auth: Auth
) -> None:
    admin = auth(Role.ADMIN)
    load_demo(client, admin)
    r = client.post("/api/v1/periods/open", json={"period_key": "2026-11"}, headers=admin)
    assert r.status_code == 200 and r.json()["at"].startswith("2026-11-01")
    bad = client.post("/api/v1/periods/open", json={"period_key": "2026-13"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_period_key"


def test_periods_follow_the_deployments_local_calendar(
    client: TestClient, auth: Auth, session_factory: sessionmaker[Session], settings: Settings, engine: Engine
) -> None:
    """Half past ten at night UTC is already tomorrow in Damascus: the day's bread opened then is the
    local day's, from local midnight (21:00 UTC), not a UTC day that would reset at 03:00 local."""
    admin = auth(Role.ADMIN)
    with session_factory.begin() as s:
        seed_registry(s)
    load_demo(client, admin)
    at = "2026-11-27T22:30:00+00:00"
    r = client.post("/api/v1/periods/open", json={"at": at}, headers=admin)
    assert r.status_code == 200, r.text
    bread = next(o for o in r.json()["opened"] if o["product"] == "bread")
    assert datetime.fromisoformat(bread["period_start"]) == datetime(2026, 11, 27, 21, tzinfo=UTC)
    assert datetime.fromisoformat(bread["period_end"]) == datetime(2026, 11, 28, 21, tzinfo=UTC)
    # a deployment configured for UTC opens the UTC day instead
    with TestClient(create_app(settings.model_copy(update={"timezone": "UTC"}), engine)) as utc:
        r = utc.post("/api/v1/periods/open", json={"at": "2026-11-29T22:30:00+00:00"}, headers=admin)
    assert r.status_code == 200, r.text
    bread = next(o for o in r.json()["opened"] if o["product"] == "bread")
    assert datetime.fromisoformat(bread["period_start"]) == datetime(2026, 11, 29, tzinfo=UTC)
    with pytest.raises(ValidationError, match="unknown time zone"):
        Settings(database_url="sqlite://", timezone="Mars/Olympus_Mons")
    # walk-in caps count the same local day unless told otherwise
    assert Settings(database_url="sqlite://", timezone="Europe/Berlin").walk_in_zone == "Europe/Berlin"
    assert Settings(database_url="sqlite://", walk_in_timezone="UTC").walk_in_zone == "UTC"
