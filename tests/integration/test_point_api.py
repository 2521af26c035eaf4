from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from card_backend.auth.principal import Role
from card_backend.db import make_session_factory
from card_backend.point import service as point_service


def point_body(**extra):
    body = {
        "code": "FS-DAM-001",
        "name_ar": "محطة المزة",
        "name_en": "Mezzeh station",
        "kind": "fuel_station",
        "governorate": "damascus",
        "products": ["gasoline", "diesel_heating"],
    }
    body.update(extra)
    return body


def test_points_are_created_listed_and_updated(client, auth):
    reg = auth(Role.REGISTRAR)
    r = client.post("/api/v1/points", json=point_body(), headers=reg)
    assert r.status_code == 201, r.text
    assert r.json()["products"] == ["diesel_heating", "gasoline"]
    client.post(
        "/api/v1/points",
        json=point_body(code="BK-ALP-1", kind="bakery", governorate="aleppo", products=["bread"]),
        headers=reg,
    )
    aud = auth(Role.AUDITOR)
    listed = client.get("/api/v1/points", params={"kind": "bakery"}, headers=aud).json()
    assert [p["code"] for p in listed] == ["BK-ALP-1"]
    r = client.patch(
        "/api/v1/points/FS-DAM-001", json={"products": ["gasoline"], "active": False}, headers=reg
    )
    assert r.json()["products"] == ["gasoline"] and r.json()["active"] is False
    again = client.post("/api/v1/points", json=point_body(), headers=reg)
    assert again.status_code == 409 and again.json()["error"] == "duplicate_point_code"
    bad = client.post("/api/v1/points", json=point_body(code="X-1", governorate="mars"), headers=reg)
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_governorate"
    assert client.post("/api/v1/points", json=point_body(code="X-2"), headers=aud).status_code == 403


def test_device_token_is_shown_once_works_and_stops_working_when_revoked(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    client.post("/api/v1/points", json=point_body(), headers=reg)
    r = client.post("/api/v1/points/FS-DAM-001/devices", json={"name": "pump-1"}, headers=reg)
    assert r.status_code == 201, r.text
    enrolled = r.json()
    token = enrolled["token"]
    assert token.startswith("dev_")
    listed = client.get("/api/v1/points/FS-DAM-001/devices", headers=reg).json()
    assert "token" not in listed[0] and listed[0]["revoked_at"] is None
    with engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT token_sha256 FROM devices").scalar_one()
    assert token not in stored and len(stored) == 64
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["role"] == "device"
    assert (
        client.post(f"/api/v1/devices/{enrolled['id']}/revoke", headers=auth(Role.AUDITOR)).status_code == 403
    )
    r = client.post(f"/api/v1/devices/{enrolled['id']}/revoke", headers=auth(Role.SUPERVISOR))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401 and me.json()["error"] == "invalid_device_token"



@pytest.mark.postgres
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_device_revoked_by_another_api_process_is_refused_here_at_once(client, auth, engine):
    """Every API process caches device tokens for 30 s; a revocation committed elsewhere (another uvicorn
    worker: the same service call in its own transaction) reaches this process's cache by NOTIFY, also
    after the listener's connection was cut."""
    listener = client.app.state.revocations
    assert listener is not None and listener.listening.wait(10)
    reg = auth(Role.REGISTRAR)
    client.post("/api/v1/points", json=point_body(), headers=reg)
    enrol = "/api/v1/points/FS-DAM-001/devices"
    devices = [client.post(enrol, json={"name": f"pump-{n}"}, headers=reg).json() for n in (1, 2)]

    def me(token: str) -> int:
        return client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code

    def revoke_elsewhere(device_id: int) -> None:
        with make_session_factory(engine).begin() as session:
            point_service.revoke_device(session, device_id)

    def refused_within(token: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if me(token) == 401:
                return True
            time.sleep(0.05)
        return False

    assert [me(d["token"]) for d in devices] == [200, 200]  # both cached now
    revoke_elsewhere(devices[0]["id"])
    assert refused_within(devices[0]["token"], 3.0)
    with engine.connect() as conn:  # cut the listener's connection: it clears, reconnects, listens again
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE query LIKE 'LISTEN device_revoked%'"))
    deadline = time.monotonic() + 5
    while listener.listening.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.listening.wait(10)
    assert me(devices[1]["token"]) == 200
    revoke_elsewhere(devices[1]["id"])
    assert refused_within(devices[1]["token"], 3.0)
