from __future__ import annotations

from card_backend.auth.principal import Role
from tests.integration.test_family_api import counts, make_family


def issue(client, headers, person_id: int, number: str = "L-1"):
    body = {
        "person_id": person_id,
        "number": number,
        "categories": "b",
        "issued_on": "2020-01-01",
        "expires_on": "2025-01-01",
    }
    r = client.post("/api/v1/licences", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


def state(client, headers, lid: int, on: str) -> str:
    r = client.get(f"/api/v1/licences/{lid}/state", params={"on": on}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["state"]  # type: ignore[no-any-return]


def test_licence_state_as_of_a_date(client, auth):
    reg = auth(Role.REGISTRAR)
    pid = make_family(client, reg)["members"][0]["id"]
    lic = issue(client, reg, pid)
    assert lic["categories"] == "B" and [h["state"] for h in lic["history"]] == ["valid"]
    r = client.post(
        f"/api/v1/licences/{lic['id']}/states",
        json={"state": "suspended", "reason": "speeding", "effective_on": "2022-03-01"},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    client.post(
        f"/api/v1/licences/{lic['id']}/states",
        json={"state": "valid", "reason": "served", "effective_on": "2022-09-01"},
        headers=reg,
    )
    aud = auth(Role.AUDITOR)
    assert state(client, aud, lic["id"], "2019-06-01") == "not_issued"
    assert state(client, aud, lic["id"], "2021-01-01") == "valid"
    assert state(client, aud, lic["id"], "2022-05-05") == "suspended"
    assert state(client, aud, lic["id"], "2022-10-01") == "valid"
    assert state(client, aud, lic["id"], "2025-01-01") == "valid"
    assert state(client, aud, lic["id"], "2025-01-02") == "expired"
    r = client.post(
        f"/api/v1/licences/{lic['id']}/states",
        json={"state": "revoked", "reason": "fraud", "effective_on": "2023-02-01"},
        headers=reg,
    )
    assert r.status_code == 201
    assert state(client, aud, lic["id"], "2023-01-31") == "valid"
    assert state(client, aud, lic["id"], "2030-01-01") == "revoked"
    detail = client.get(
        f"/api/v1/licences/{lic['id']}/state", params={"on": "2024-01-01"}, headers=aud
    ).json()
    assert detail["reason"] == "fraud" and detail["since"] == "2023-02-01"
    listed = client.get(f"/api/v1/persons/{pid}/licences", headers=aud).json()
    assert [h["state"] for h in listed[0]["history"]] == ["valid", "suspended", "valid", "revoked"]


def test_revoked_licence_cannot_be_reinstated_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    lic = issue(client, reg, make_family(client, reg)["members"][0]["id"])
    client.post(
        f"/api/v1/licences/{lic['id']}/states",
        json={"state": "revoked", "reason": "fraud", "effective_on": "2021-01-01"},
        headers=reg,
    )
    before = counts(engine)
    r = client.post(
        f"/api/v1/licences/{lic['id']}/states",
        json={"state": "valid", "reason": "appeal", "effective_on": "2022-01-01"},
        headers=reg,
    )
    assert r.status_code == 409 and r.json()["error"] == "illegal_licence_transition"
    assert counts(engine) == before


def test_licence_needs_a_person_and_a_unique_number(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    pid = make_family(client, reg)["members"][0]["id"]
    issue(client, reg, pid, "L-9")
    before = counts(engine)
    body = {
        "person_id": 987654,
        "number": "L-10",
        "categories": "B",
        "issued_on": "2020-01-01",
        "expires_on": "2030-01-01",
    }
    r = client.post("/api/v1/licences", json=body, headers=reg)
    assert r.status_code == 404 and r.json()["error"] == "person_not_found"
    body.update(person_id=pid, number="L-9")
    r = client.post("/api/v1/licences", json=body, headers=reg)
    assert r.status_code == 409 and r.json()["error"] == "duplicate_licence_number"
    body.update(number="L-11", expires_on="2019-01-01")
    assert client.post("/api/v1/licences", json=body, headers=reg).status_code == 422
    assert (
        client.post(
            "/api/v1/licences", json={**body, "expires_on": "2030-01-01"}, headers=auth(Role.AUDITOR)
        ).status_code
        == 403
    )
    assert counts(engine) == before
