from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from card_backend.auth.principal import Role
from tests.integration.test_family_api import counts, make_family
from tests.integration.test_vehicle_api import vehicle_body


def issue(client, headers, holder_id: int, holder_type: str = "family", serial: str | None = None):
    body = {"holder_type": holder_type, "holder_id": holder_id}
    if serial:
        body["serial"] = serial
    return client.post("/api/v1/cards", json=body, headers=headers)


def test_issue_a_card_to_a_family_and_to_a_vehicle(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    r = issue(client, reg, fam["id"])
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["state"] == "active" and card["serial"].startswith("SC")
    v = client.post("/api/v1/vehicles", json=vehicle_body(fam["head_person_id"]), headers=reg).json()
    vcard = issue(client, reg, v["id"], "vehicle", "VEH-0001").json()
    assert vcard["serial"] == "VEH-0001" and vcard["holder_type"] == "vehicle"
    summary = client.get("/api/v1/cards/VEH-0001/holder", headers=auth(Role.AUDITOR)).json()
    assert summary["vehicle"]["plate"] == "123456" and summary["vehicle"]["owner_family_id"] == fam["id"]
    fsum = client.get(f"/api/v1/cards/{card['serial']}/holder", headers=reg).json()
    assert fsum["family"]["members_alive"] == 3 and fsum["family"]["head_name_ar"] == "محمد الأحمد"
    assert fsum["active_card_serial"] == card["serial"] and fsum["exclusions"] == []


def test_one_active_card_per_holder_and_unique_serial(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    other = make_family(client, reg)
    assert issue(client, reg, fam["id"], serial="SER-1").status_code == 201
    before = counts(engine)
    r = issue(client, reg, fam["id"])
    assert r.status_code == 409 and r.json()["error"] == "holder_has_active_card"
    r = issue(client, reg, other["id"], serial="SER-1")
    assert r.status_code == 409 and r.json()["error"] == "duplicate_card_serial"
    r = issue(client, reg, 424242)
    assert r.status_code == 404 and r.json()["error"] == "holder_not_found"
    assert counts(engine) == before


@pytest.mark.parametrize("first", ["block", "lost"])
def test_blocked_or_lost_card_never_active_again_and_replacement_keeps_holder(client, auth, first):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    serial = issue(client, reg, fam["id"], serial="OLD-1").json()["serial"]
    assert client.post(f"/api/v1/cards/{serial}/replace", json={}, headers=reg).json()["error"] == (
        "illegal_card_transition"
    )
    r = client.post(f"/api/v1/cards/{serial}/{first}", json={"reason": "stolen"}, headers=reg)
    assert r.status_code == 200 and r.json()["state"] == ("blocked" if first == "block" else "lost")
    for move in ("block", "lost"):
        r = client.post(f"/api/v1/cards/{serial}/{move}", json={"reason": "again"}, headers=reg)
        assert r.status_code == 409 and r.json()["error"] == "illegal_card_transition"
    r = client.post(f"/api/v1/cards/{serial}/replace", json={"serial": "NEW-1"}, headers=reg)
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["holder_type"], new["holder_id"], new["state"]) == ("family", fam["id"], "active")
    old = client.get(f"/api/v1/cards/{serial}", headers=reg).json()
    assert old["state"] == "replaced" and new["replaces_id"] == old["id"]
    r = client.post(f"/api/v1/cards/{serial}/replace", json={}, headers=reg)
    assert r.status_code == 409 and r.json()["error"] == "illegal_card_transition"
    cards = client.get(f"/api/v1/holders/family/{fam['id']}/cards", headers=reg).json()
    assert [(c["serial"], c["state"]) for c in cards] == [("OLD-1", "replaced"), ("NEW-1", "active")]


def test_citizen_reports_a_lost_card_with_serial_and_a_members_national_id(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    serial = issue(client, reg, fam["id"]).json()["serial"]
    stranger = make_family(client, reg)["members"][0]["national_id"]
    r = client.post("/api/v1/cards/report-lost", json={"serial": serial, "national_id": stranger})
    assert r.status_code == 404 and r.json()["error"] == "report_not_matched"
    r = client.post("/api/v1/cards/report-lost", json={"serial": "NOPE-1", "national_id": stranger})
    assert r.status_code == 404 and r.json()["error"] == "report_not_matched"
    assert client.get(f"/api/v1/cards/{serial}", headers=reg).json()["state"] == "active"
    member = fam["members"][2]["national_id"]
    r = client.post("/api/v1/cards/report-lost", json={"serial": serial, "national_id": member})
    assert r.status_code == 200 and r.json() == {"serial": serial, "state": "lost"}
    assert client.get(f"/api/v1/cards/{serial}", headers=reg).json()["state"] == "lost"
    again = client.post("/api/v1/cards/report-lost", json={"serial": serial, "national_id": member})
    assert again.status_code == 200 and again.json()["state"] == "lost"


def test_auditor_cannot_issue_or_block(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    aud = auth(Role.AUDITOR)
    assert issue(client, aud, fam["id"]).status_code == 403
    serial = issue(client, reg, fam["id"]).json()["serial"]
    assert client.post(f"/api/v1/cards/{serial}/block", json={"reason": "x"}, headers=aud).status_code == 403
    assert client.get(f"/api/v1/cards/{serial}", headers=aud).json()["state"] == "active"


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_two_concurrent_issues_for_one_holder_exactly_one_wins(engine, auth, app, client):
    """PostgreSQL: the partial unique index decides when the service checks pass in both requests."""
    reg = auth(Role.REGISTRAR)
    fid = make_family(client, reg)["id"]
    results: list[int] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        with TestClient(app) as c:
            barrier.wait()
            results.append(issue(c, reg, fid, serial=f"RACE-{i}").status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [409] * 7
    cards = client.get(f"/api/v1/holders/family/{fid}/cards", headers=reg).json()
    assert [c["state"] for c in cards] == ["active"]


def test_guessing_national_ids_on_the_public_lost_form_is_stopped(client, auth, engine):
    """Five reports that match nothing on one serial within the hour, and the form refuses that serial
    (429) whatever is typed — the right national ID included — so a stranger cannot guess a member's ID
    to block a family's card. Failures survive their request's rollback."""
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    serial = issue(client, reg, fam["id"]).json()["serial"]
    other = issue(client, reg, make_family(client, reg)["id"]).json()["serial"]
    member = fam["members"][0]["national_id"]
    for n in range(5):
        r = client.post("/api/v1/cards/report-lost", json={"serial": serial, "national_id": f"0000000000{n}"})
        assert r.status_code == 404 and r.json()["error"] == "report_not_matched"
    r = client.post("/api/v1/cards/report-lost", json={"serial": serial, "national_id": member})
    assert r.status_code == 429 and r.json()["error"] == "report_rate_limited"
    assert client.get(f"/api/v1/cards/{serial}", headers=reg).json()["state"] == "active"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM lost_report_failures")).scalar_one() == 5
    assert client.get(f"/api/v1/cards/{other}", headers=reg).json()["state"] == "active"
    r = client.post("/api/v1/cards/report-lost", json={"serial": other, "national_id": "99999999999"})
    assert r.status_code == 404  # another card's form still answers
