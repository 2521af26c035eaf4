"""Families and persons over HTTP, on SQLite and PostgreSQL. Helpers here are reused by the other
registry tests (import them; they are plain functions)."""

from __future__ import annotations

import itertools
import threading
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from card_backend import nationalid
from card_backend.auth.principal import Role
from card_backend.card.models import Card
from card_backend.family.models import Family, FamilyEvent, Person
from card_backend.licence.models import Licence, LicenceState
from card_backend.vehicle.models import Vehicle

_serials = itertools.count(1000)
_books = itertools.count(1)


def person(relation: str = "child", **extra: Any) -> dict[str, Any]:
    body = {
        "national_id": nationalid.make(1, next(_serials)),
        "first_name_ar": "محمد",
        "last_name_ar": "الأحمد",
        "first_name_en": "Mohammad",
        "last_name_en": "Al-Ahmad",
        "birth_date": "1980-05-01",
        "sex": "M",
        "relation": relation,
    }
    body.update(extra)
    return body


def family_body(members: int = 3, **extra: Any) -> dict[str, Any]:
    people = [person("head"), person("spouse", sex="F", first_name_ar="فاطمة", birth_date="1983-02-02")]
    people += [person("child", birth_date="2010-01-01") for _ in range(members - 2)]
    body = {
        "book_number": f"BK-{next(_books):06d}",
        "governorate": "damascus",
        "address": "المزة",
        "members": people,
    }
    body.update(extra)
    return body


def make_family(client, headers, members: int = 3, **extra: Any) -> dict[str, Any]:
    r = client.post("/api/v1/families", json=family_body(members, **extra), headers=headers)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def counts(engine: Engine) -> dict[str, int]:
    tables = {
        "families": Family,
        "persons": Person,
        "events": FamilyEvent,
        "vehicles": Vehicle,
        "licences": Licence,
        "licence_states": LicenceState,
        "cards": Card,
    }
    with engine.connect() as conn:
        return {k: int(conn.scalar(select(func.count()).select_from(m)) or 0) for k, m in tables.items()}


def test_create_family_returns_members_head_and_a_create_event(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg, members=4)
    assert len(fam["members"]) == 4
    head = next(m for m in fam["members"] if m["relation"] == "head")
    assert fam["head_person_id"] == head["id"] and fam["status"] == "active"
    assert [e["kind"] for e in fam["history"]] == ["create"]
    assert fam["history"][0]["actor"].startswith("user:registrar")
    got = client.get(f"/api/v1/families/{fam['id']}", headers=auth(Role.AUDITOR))
    assert got.status_code == 200 and got.json()["book_number"] == fam["book_number"]
    listed = client.get("/api/v1/families", params={"book_number": fam["book_number"]}, headers=reg).json()
    assert [f["id"] for f in listed] == [fam["id"]]
    nid = head["national_id"]
    assert client.get(f"/api/v1/persons/by-national-id/{nid}", headers=reg).json()["id"] == head["id"]


def test_birth_death_update_keep_history_with_old_and_new_values(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    fid = fam["id"]
    baby = person("child", birth_date=date.today().isoformat(), first_name_en="Sara", sex="F")
    r = client.post(f"/api/v1/families/{fid}/births", json={"child": baby}, headers=reg)
    assert r.status_code == 201, r.text
    assert len(r.json()["members"]) == 4
    grandpa = next(m for m in r.json()["members"] if m["relation"] == "spouse")
    r = client.post(
        f"/api/v1/families/{fid}/deaths",
        json={"person_id": grandpa["id"], "died_on": "2024-01-02"},
        headers=reg,
    )
    assert r.status_code == 200, r.text
    dead = next(m for m in r.json()["members"] if m["id"] == grandpa["id"])
    assert dead["alive"] is False and dead["died_on"] == "2024-01-02"
    again = client.post(
        f"/api/v1/families/{fid}/deaths",
        json={"person_id": grandpa["id"], "died_on": "2024-01-03"},
        headers=reg,
    )
    assert again.status_code == 409 and again.json()["error"] == "person_deceased"
    r = client.patch(f"/api/v1/families/{fid}", json={"address": "باب توما"}, headers=reg)
    history = r.json()["history"]
    assert [e["kind"] for e in history] == ["create", "birth", "death", "update"]
    assert history[-1]["old"] == {"address": "المزة"} and history[-1]["new"] == {"address": "باب توما"}
    assert history[1]["new"]["first_name_en"] == "Sara"
    assert history[2]["old"]["alive"] is True and history[2]["new"]["died_on"] == "2024-01-02"


def test_a_family_dissolved_by_its_last_death_has_its_card_blocked(client, auth):
    """Nobody is left to draw the family's quota: the family card, if someone kept it, must not go on
    drawing the period already opened. A death that leaves someone alive blocks nothing."""
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg, members=2)
    fid = fam["id"]
    card = client.post("/api/v1/cards", json={"holder_type": "family", "holder_id": fid}, headers=reg).json()
    spouse, head = (next(m for m in fam["members"] if m["relation"] == r) for r in ("spouse", "head"))
    death = {"person_id": spouse["id"], "died_on": "2024-01-02"}
    r = client.post(f"/api/v1/families/{fid}/deaths", json=death, headers=reg)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert client.get(f"/api/v1/cards/{card['serial']}", headers=reg).json()["state"] == "active"
    death = {"person_id": head["id"], "died_on": "2024-03-04"}
    r = client.post(f"/api/v1/families/{fid}/deaths", json=death, headers=reg)
    assert r.status_code == 200 and r.json()["status"] == "dissolved"
    assert r.json()["history"][-1]["new"]["cards_blocked"] == [card["serial"]]
    now = client.get(f"/api/v1/cards/{card['serial']}", headers=reg).json()
    assert now["state"] == "blocked" and now["state_reason"].startswith("family_dissolved")


def test_marriage_split_founds_a_new_family_headed_by_the_member(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg, members=3)
    child = next(m for m in fam["members"] if m["relation"] == "child")
    r = client.post(
        f"/api/v1/families/{fam['id']}/splits",
        json={"person_id": child["id"], "new_book_number": "NEW-1", "address": "حمص"},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["book_number"] == "NEW-1" and new["head_person_id"] == child["id"]
    assert [m["relation"] for m in new["members"]] == ["head"]
    assert new["history"][0]["kind"] == "split" and new["history"][0]["old"]["family_id"] == fam["id"]
    old = client.get(f"/api/v1/families/{fam['id']}", headers=reg).json()
    assert child["id"] not in [m["id"] for m in old["members"]]
    assert old["history"][-1]["kind"] == "split" and old["history"][-1]["new"]["family_id"] == new["id"]
    head_leaves = client.post(
        f"/api/v1/families/{fam['id']}/splits",
        json={"person_id": fam["head_person_id"], "new_book_number": "NEW-2"},
        headers=reg,
    )
    assert head_leaves.status_code == 409 and head_leaves.json()["error"] == "head_cannot_leave"


def test_head_change_records_old_and_new_head(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    spouse = next(m for m in fam["members"] if m["relation"] == "spouse")
    r = client.post(
        f"/api/v1/families/{fam['id']}/head",
        json={"person_id": spouse["id"], "old_head_relation": "spouse"},
        headers=reg,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["head_person_id"] == spouse["id"]
    relations = {m["id"]: m["relation"] for m in body["members"]}
    assert relations[spouse["id"]] == "head" and relations[fam["head_person_id"]] == "spouse"
    event = body["history"][-1]
    assert event["kind"] == "head_change"
    assert (
        event["old"]["head_person_id"] == fam["head_person_id"]
        and event["new"]["head_person_id"] == spouse["id"]
    )


def test_bad_national_id_is_refused_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    before = counts(engine)
    body = family_body()
    body["members"][1]["national_id"] = body["members"][1]["national_id"][:10] + "x"
    r = client.post("/api/v1/families", json=body, headers=reg)
    assert r.status_code == 422 and r.json()["error"] == "invalid_national_id"
    good = body["members"][2]["national_id"]
    body["members"][1]["national_id"] = good[:10] + str((int(good[10]) + 1) % 10)
    r = client.post("/api/v1/families", json=body, headers=reg)
    assert r.status_code == 422 and "check digit" in r.json()["detail"]["reason"]
    assert counts(engine) == before


def test_duplicate_book_number_and_national_id_are_refused_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    before = counts(engine)
    r = client.post("/api/v1/families", json=family_body(book_number=fam["book_number"]), headers=reg)
    assert r.status_code == 409 and r.json()["error"] == "duplicate_family_book"
    body = family_body()
    body["members"][2]["national_id"] = fam["members"][0]["national_id"]
    r = client.post("/api/v1/families", json=body, headers=reg)
    assert r.status_code == 409 and r.json()["error"] == "duplicate_national_id"
    assert counts(engine) == before


def test_unknown_governorate_is_refused_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    before = counts(engine)
    r = client.post("/api/v1/families", json=family_body(governorate="atlantis"), headers=reg)
    assert r.status_code == 422 and r.json()["error"] == "unknown_governorate"
    assert "damascus" in r.json()["detail"]["allowed"]
    r = client.patch(
        f"/api/v1/families/{fam['id']}", json={"governorate": "atlantis", "address": "x"}, headers=reg
    )
    assert r.status_code == 422 and r.json()["error"] == "unknown_governorate"
    assert counts(engine) == before
    assert client.get(f"/api/v1/families/{fam['id']}", headers=reg).json()["address"] == "المزة"


def test_family_needs_exactly_one_head(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    before = counts(engine)
    body = family_body()
    body["members"][1]["relation"] = "head"
    r = client.post("/api/v1/families", json=body, headers=reg)
    assert r.status_code == 422 and r.json()["error"] == "family_needs_one_head"
    assert counts(engine) == before


def test_auditor_and_supervisor_read_but_cannot_write(client, auth):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    for role in (Role.AUDITOR, Role.SUPERVISOR, Role.CLERK):
        headers = auth(role)
        assert client.get(f"/api/v1/families/{fam['id']}", headers=headers).status_code == 200
        r = client.post("/api/v1/families", json=family_body(), headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "role_forbidden"
        r = client.patch(f"/api/v1/families/{fam['id']}", json={"address": "x"}, headers=headers)
        assert r.status_code == 403
    assert client.get(f"/api/v1/families/{fam['id']}").status_code == 401
    admin = auth(Role.ADMIN)
    assert client.post("/api/v1/families", json=family_body(), headers=admin).status_code == 201


def test_national_ids_typed_in_arabic_digits_are_stored_in_ascii(client, auth):
    reg = auth(Role.REGISTRAR)
    body = family_body()
    ascii_id = body["members"][1]["national_id"]
    body["members"][1]["national_id"] = ascii_id.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    fam = client.post("/api/v1/families", json=body, headers=reg).json()
    assert fam["members"][1]["national_id"] == ascii_id
    found = client.get(f"/api/v1/persons/by-national-id/{ascii_id}", headers=reg)
    assert found.status_code == 200


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_concurrent_registrations_of_one_book_number_one_wins_the_rest_get_the_named_error(engine, app, auth):
    """PostgreSQL: the unique index decides when both requests pass the service's own check."""
    reg = auth(Role.REGISTRAR)
    results: list[tuple[int, str]] = []
    barrier = threading.Barrier(6)

    def go() -> None:
        with TestClient(app) as c:
            body = family_body(book_number="RACE-BOOK")
            barrier.wait()
            r = c.post("/api/v1/families", json=body, headers=reg)
            results.append((r.status_code, r.json().get("error", "")))

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [(201, "")] + [(409, "duplicate_family_book")] * 5
    assert counts(engine)["families"] == 1
