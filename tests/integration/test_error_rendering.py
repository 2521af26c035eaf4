"""Inputs and outages that used to end in a plain-text 500 answer in the JSON error format.

- An id no row can have (past 2^31-1, the ``Integer`` keys' range) is a 422 ``validation_error`` on
  SQLite (whose driver raised ``OverflowError`` past 2^63-1) and on PostgreSQL ("integer out of range"),
  in a path, a query or a body.
- A database that cannot be reached is a 503 ``database_unavailable`` with ``Retry-After``, for a
  redemption (the group commit engine's error) and for a plain read (the request's session).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import create_engine, text

from card_backend.app import create_app
from card_backend.auth.principal import Role
from card_backend.auth.security import issue_access_token
from card_backend.config import Settings
from card_backend.db import make_engine
from card_backend.migrate import upgrade
from tests.conftest import PG_ADMIN_URL

Auth = Callable[..., dict[str, str]]
HUGE = 99999999999999999999  # past 2^63-1: SQLite's driver cannot bind it
BIGGEST = 2**31 - 1  # the largest id an Integer primary key holds


def _validation_error_at(r: Response, where: str) -> None:
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "validation_error", body
    assert any(e["loc"][0] == where for e in body["detail"]), body


def test_huge_ids_in_paths_are_422_json(client: TestClient, auth: Auth) -> None:
    reader, registrar = auth(Role.SUPERVISOR), auth(Role.REGISTRAR)
    for path in (
        f"/api/v1/families/{HUGE}/draws",
        f"/api/v1/holders/family/{HUGE}/explain",
        f"/api/v1/families/{HUGE}",
        f"/api/v1/holders/vehicle/{HUGE}/cards",
        f"/api/v1/licences/{HUGE}",
        f"/api/v1/vehicles/{HUGE}",
    ):
        _validation_error_at(client.get(path, headers=reader), "path")
    _validation_error_at(client.get(f"/api/v1/families/{BIGGEST + 1}", headers=reader), "path")
    _validation_error_at(client.get(f"/api/v1/families?offset={HUGE}", headers=reader), "query")
    death = {"person_id": 1, "died_on": "2026-01-01"}
    r = client.post(f"/api/v1/families/{HUGE}/deaths", json=death, headers=registrar)
    _validation_error_at(r, "path")


def test_huge_ids_in_bodies_are_422_json(client: TestClient, auth: Auth) -> None:
    registrar = auth(Role.REGISTRAR)
    topup = {"id": str(uuid.uuid4()), "holder_type": "family", "holder_id": HUGE, "product_code": "sugar",
             "quantity_qty": 1000, "reason": "travel top-up"}
    _validation_error_at(client.post("/api/v1/topups", json=topup, headers=registrar), "body")
    rebind = {"id": str(uuid.uuid4()), "holder_type": "family", "holder_id": HUGE, "product_code": "sugar",
              "point_code": "P1"}
    _validation_error_at(client.post("/api/v1/bindings", json=rebind, headers=registrar), "body")
    card = {"holder_type": "family", "holder_id": HUGE}
    _validation_error_at(client.post("/api/v1/cards", json=card, headers=registrar), "body")
    licence = {"person_id": HUGE, "number": "L1", "categories": "B", "issued_on": "2020-01-01",
               "expires_on": "2030-01-01"}
    _validation_error_at(client.post("/api/v1/licences", json=licence, headers=registrar), "body")


def test_the_largest_id_is_an_ordinary_not_found(client: TestClient, auth: Auth) -> None:
    reader = auth(Role.SUPERVISOR)
    for path in (f"/api/v1/families/{BIGGEST}", f"/api/v1/holders/family/{BIGGEST}/explain"):
        r = client.get(path, headers=reader)
        assert r.status_code == 404 and "error" in r.json(), r.text
    assert client.get(f"/api/v1/families/{BIGGEST}/draws", headers=reader).json() == []


def test_a_number_past_64_bits_in_a_new_product_is_422_json(client: TestClient, auth: Auth) -> None:
    """A product's price basis once reached the database unbounded (SQLite's driver raised OverflowError,
    PostgreSQL a DataError, both rendered ``invalid_value``); it is now bounded by the schema, as a
    correction's is (``ProductIn``), so both databases answer the same ``validation_error``."""
    product = {"code": "caviar", "name_ar": "كافيار", "name_en": "Caviar", "unit": "g",
               "price_per_qty": HUGE, "free_price_minor": 0}
    r = client.post("/api/v1/products", json=product, headers=auth(Role.ADMIN))
    assert r.status_code == 422 and r.json()["error"] == "validation_error", r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "price_per_qty"]]


# The database cannot be reached -----------------------------------------------------------------------
def _app_on(url: str) -> TestClient:
    settings = Settings(database_url=url, jwt_secret="u" * 48)
    return TestClient(create_app(settings, make_engine(url)))


def _token(client: TestClient, role: Role) -> dict[str, str]:
    """Staff tokens are checked without the database: a clerk with no point reaches the engine."""
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    token = issue_access_token(settings, username=f"{role.value}-1", role=role.value, point_id=None)
    return {"Authorization": f"Bearer {token}"}


def _redeem(client: TestClient) -> Response:
    body = {"id": str(uuid.uuid4()), "card_serial": "F000001", "product_code": "sugar",
            "quantity_qty": 100, "point_code": "P1"}
    return client.post("/api/v1/redemptions", json=body, headers=_token(client, Role.CLERK))


def _read(client: TestClient) -> Response:
    return client.get("/api/v1/families/1", headers=_token(client, Role.REGISTRAR))


def _assert_unavailable(r: Response) -> None:
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "database_unavailable", r.text
    assert int(r.headers["Retry-After"]) > 0


def test_an_unopenable_sqlite_database_is_503_json(tmp_path: Path) -> None:
    with _app_on(f"sqlite:///{tmp_path}") as client:  # a directory: "unable to open database file"
        _assert_unavailable(_redeem(client))
        _assert_unavailable(_read(client))


@contextmanager
def _admin() -> Iterator[Callable[[str], None]]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def run(sql: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(sql))

    try:
        yield run
    finally:
        admin.dispose()


def test_a_postgresql_database_missing_then_dropped_is_503_json() -> None:
    """Not there yet: 503; created: served; dropped under the running app: 503 again, for a
    redemption and for a read, never a plain-text 500."""
    name = f"sl_gone_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    with _admin() as sql:
        try:
            with _app_on(url) as client:
                _assert_unavailable(_redeem(client))
                _assert_unavailable(_read(client))
                sql(f'CREATE DATABASE "{name}"')
                upgrade(url)
                assert _read(client).status_code == 404
                assert _redeem(client).status_code == 409  # served: no such card
                sql(f'DROP DATABASE "{name}" WITH (FORCE)')
                _assert_unavailable(_redeem(client))
                _assert_unavailable(_read(client))
        finally:
            sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("path", ["/api/v1/families/1", "/api/v1/products"])
def test_a_refused_postgresql_connection_is_503_json(path: str) -> None:
    """Nothing listens on the port at all (the server is down)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _app_on(f"postgresql+psycopg://postgres@127.0.0.1:{port}/nothing") as client:
        _assert_unavailable(client.get(path, headers=_token(client, Role.ADMIN)))
        _assert_unavailable(_redeem(client))
