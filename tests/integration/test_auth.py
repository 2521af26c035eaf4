from __future__ import annotations

from card_backend.auth.principal import Role
from tests.conftest import PASSWORD


def test_sign_in_returns_token_and_wrong_password_is_401(client, make_user):
    name = make_user(Role.REGISTRAR)
    ok = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert ok.status_code == 200
    assert ok.json()["role"] == "registrar"
    bad = client.post("/api/v1/auth/token", data={"username": name, "password": "wrong-password"})
    assert bad.status_code == 401
    assert bad.json()["error"] == "invalid_credentials"


def test_no_token_is_401_and_garbage_token_is_401(client):
    assert client.get("/api/v1/auth/me").json()["error"] == "not_authenticated"
    r = client.get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_registrar_cannot_create_users_admin_can(client, auth):
    body = {"username": "clerk_a", "password": "long-enough-pw", "role": "auditor"}
    r = client.post("/api/v1/users", json=body, headers=auth(Role.REGISTRAR))
    assert r.status_code == 403 and r.json()["error"] == "role_forbidden"
    r = client.post("/api/v1/users", json=body, headers=auth(Role.ADMIN))
    assert r.status_code == 201, r.text
    again = client.post("/api/v1/users", json=body, headers=auth(Role.ADMIN))
    assert again.status_code == 409 and again.json()["error"] == "duplicate_username"


def test_health_ready_and_validation_errors_are_json(client, auth):
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    r = client.post("/api/v1/users", json={"username": "x"}, headers=auth(Role.ADMIN))
    assert r.status_code == 422 and r.json()["error"] == "validation_error"
