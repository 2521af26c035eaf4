from __future__ import annotations

from card_backend.auth.principal import Role
from tests.integration.test_family_api import counts, make_family


def vehicle_body(owner_id: int, **extra):
    body = {
        "plate": "123456",
        "governorate": "damascus",
        "kind": "private",
        "fuel": "gasoline",
        "engine_cc": 1600,
        "model_year": 2012,
        "owner_person_id": owner_id,
    }
    body.update(extra)
    return body


def test_register_vehicle_by_owner_id_or_national_id(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    head = fam["members"][0]
    r = client.post("/api/v1/vehicles", json=vehicle_body(head["id"], plate="ab-12"), headers=reg)
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["plate"] == "AB-12" and v["owner_person_id"] == head["id"]
    body = vehicle_body(None, plate="T-77", kind="taxi", owner_national_id=head["national_id"])
    assert client.post("/api/v1/vehicles", json=body, headers=reg).status_code == 201
    mine = client.get(f"/api/v1/persons/{head['id']}/vehicles", headers=auth(Role.AUDITOR)).json()
    assert [x["plate"] for x in mine] == ["AB-12", "T-77"]
    assert client.get(f"/api/v1/vehicles/{v['id']}", headers=reg).json()["kind"] == "private"


def test_vehicle_without_owner_is_refused_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    before = counts(engine)
    r = client.post("/api/v1/vehicles", json=vehicle_body(999_999), headers=reg)
    assert r.status_code == 422 and r.json()["error"] == "vehicle_without_owner"
    body = vehicle_body(None, owner_national_id="01000000018")
    r = client.post("/api/v1/vehicles", json=body, headers=reg)
    assert r.status_code == 422 and r.json()["error"] == "vehicle_without_owner"
    assert counts(engine) == before


def test_plate_is_unique_per_governorate(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    owner = make_family(client, reg)["members"][0]["id"]
    assert client.post("/api/v1/vehicles", json=vehicle_body(owner), headers=reg).status_code == 201
    before = counts(engine)
    r = client.post("/api/v1/vehicles", json=vehicle_body(owner), headers=reg)
    assert r.status_code == 409 and r.json()["error"] == "duplicate_vehicle"
    assert counts(engine) == before
    r = client.post("/api/v1/vehicles", json=vehicle_body(owner, governorate="aleppo"), headers=reg)
    assert r.status_code == 201
    r = client.post(
        "/api/v1/vehicles", json=vehicle_body(owner, governorate="nowhere", plate="9"), headers=reg
    )
    assert r.status_code == 422 and r.json()["error"] == "unknown_governorate"


def test_auditor_cannot_register_a_vehicle(client, auth):
    owner = make_family(client, auth(Role.REGISTRAR))["members"][0]["id"]
    r = client.post("/api/v1/vehicles", json=vehicle_body(owner), headers=auth(Role.AUDITOR))
    assert r.status_code == 403 and r.json()["error"] == "role_forbidden"
