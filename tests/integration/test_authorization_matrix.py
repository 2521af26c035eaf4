"""Every route in the OpenAPI has a row in docs/authorization.md, and every cell holds.

A cell is ✓ (the role gets past authorization: any answer but 401/403) or ✗ (403; anonymous gets 401).
A new route without a row fails ``test_every_route_has_a_row``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from card_backend.auth.security import new_device_token, token_sha256

MATRIX = Path(__file__).resolve().parents[2] / "docs" / "authorization.md"
ROLES = ("anonymous", "admin", "registrar", "supervisor", "clerk", "auditor", "device")
PUBLIC = {("GET", "/health"), ("GET", "/ready"), ("POST", "/api/v1/auth/token")}


def load_matrix() -> dict[tuple[str, str], dict[str, bool]]:
    rows: dict[tuple[str, str], dict[str, bool]] = {}
    header: list[str] | None = None
    for line in MATRIX.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2:
            continue
        if cells[0] == "route":
            header = cells[1:]
            continue
        if header is None or set(cells[0]) <= {"-", ":", " "}:
            continue
        method, path = cells[0].strip("`").split(" ", 1)
        rows[(method, path)] = {role: cell == "✓" for role, cell in zip(header, cells[1:], strict=True)}
    return rows


def openapi_routes(client: TestClient) -> set[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return {
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m in ops
        if m in {"get", "post", "put", "patch", "delete"}
    }


@pytest.fixture
def sqlite_only_client(sqlite_engine):  # type: ignore[no-untyped-def]
    from card_backend.app import create_app
    from card_backend.config import Settings

    app = create_app(Settings(database_url=str(sqlite_engine.url), jwt_secret="m" * 48), sqlite_engine)
    with TestClient(app) as c:
        yield c


def test_every_route_has_a_row(sqlite_only_client: TestClient) -> None:
    matrix = load_matrix()
    routes = openapi_routes(sqlite_only_client)
    missing = sorted(routes - set(matrix))
    stale = sorted(set(matrix) - routes)
    assert not missing, f"routes without a row in {MATRIX.name}: {missing}"
    assert not stale, f"rows in {MATRIX.name} for routes that do not exist: {stale}"


def _headers_by_role(client: TestClient, auth, engine) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO points (id, code, name_ar, name_en, kind, governorate, products, active)"
                " VALUES (1, 'PM1', 'محطة', 'Station', 'fuel_station', 'damascus', '[]', true)"
            )
        )
        token = new_device_token()
        conn.execute(
            text("INSERT INTO devices (point_id, name, token_sha256) VALUES (1, 'matrix-device', :h)"),
            {"h": token_sha256(token)},
        )
    headers["device"] = {"Authorization": f"Bearer {token}"}
    for role in ("admin", "registrar", "supervisor", "clerk", "auditor"):
        headers[role] = auth(role, point_id=1 if role == "clerk" else None)
    return headers


def _concrete(path: str) -> str:
    """Path parameters name nothing that exists, so no probe changes what later probes rely on
    (revoking the probing device, blocking a card...)."""
    return re.sub(r"\{[^}]+\}", "999999", path)


def test_every_cell(client: TestClient, auth, engine) -> None:  # type: ignore[no-untyped-def]
    matrix = load_matrix()
    headers = _headers_by_role(client, auth, engine)
    wrong: list[str] = []
    for (method, path), cells in sorted(matrix.items()):
        for role in ROLES:
            r = client.request(method, _concrete(path), headers=headers[role], json={})
            allowed = cells[role]
            if allowed and r.status_code in (401, 403):
                wrong.append(
                    f"{method} {path} as {role}: expected allowed, got {r.status_code} {r.text[:80]}"
                )
            if not allowed:
                expected = 401 if role == "anonymous" else 403
                if r.status_code != expected:
                    wrong.append(f"{method} {path} as {role}: expected {expected}, got {r.status_code}")
            if r.status_code >= 500:
                wrong.append(f"{method} {path} as {role}: server error {r.status_code}")
    assert not wrong, "\n".join(wrong)
