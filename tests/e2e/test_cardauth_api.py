"""The backend side of card authentication and offline sync, driven by a virtual card's own answers.

Runs on SQLite and PostgreSQL (the shared ``engine`` fixture); the card is the applet itself, so these
need no pcscd — the same flows through the real PC/SC stack are in test_agent_flows.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from card_backend.auth.principal import Role
from reader_agent import protocol
from reader_agent.card import CardApplication
from reader_agent.keys import load_public_key
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from tests.e2e.backend import Backend, Direct, enrol_device, register_card

Auth = Callable[..., dict[str, str]]
SERIAL = "F000001"


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    return CardStore(tmp_path / "cards")


@pytest.fixture
def device(client: TestClient, auth: Auth, backend: Backend) -> dict[str, str]:
    return enrol_device(client, auth(Role.REGISTRAR), "P1")


def _card(store: CardStore, serial: str = SERIAL) -> CardApplication:
    card = CardApplication(Direct(Applet(store.load(serial), store.save)))
    card.select()
    return card


@pytest.fixture
def card(client: TestClient, auth: Auth, store: CardStore, backend: Backend) -> CardApplication:
    store.personalise(SERIAL, HolderType.FAMILY)
    register_card(client, auth(Role.REGISTRAR), store, SERIAL)
    return _card(store)


def _tap(client: TestClient, device: dict[str, str], card: CardApplication, serial: str = SERIAL):  # type: ignore[no-untyped-def]
    ch = client.post("/api/v1/card-auth/challenge", headers=device).json()
    answer = card.authenticate(bytes.fromhex(ch["challenge_hex"]))
    body = {
        "challenge_id": ch["challenge_id"],
        "card_serial": serial,
        "counter": answer.counter,
        "signature_hex": answer.signature.hex(),
    }
    return client.post("/api/v1/card-auth/verify", json=body, headers=device), body


def _signed(card: CardApplication, qty: int, product: str = "sugar", point: str = "P1") -> dict[str, object]:
    rid = uuid.uuid4()
    signed = card.sign_transaction(protocol.transaction_digest(rid, product, qty, point))
    return {
        "id": str(rid),
        "card_serial": SERIAL,
        "product_code": product,
        "quantity_qty": qty,
        "point_code": point,
        "counter": signed.counter,
        "signature_hex": signed.signature.hex(),
    }


def test_tap_shows_quota_and_signed_offline_allowances(
    client: TestClient, device: dict[str, str], card: CardApplication, backend: Backend
) -> None:
    r, _ = _tap(client, device, card)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["holder_type"], body["holder_id"]) == ("family", 1)
    sugar = next(line for line in body["quota"] if line["product_code"] == "sugar")
    assert sugar["available_now_qty"] == 5000
    certs = {c["product_code"]: c for c in body["balance_certificates"]}
    assert certs["sugar"]["ceiling_qty"] == 2500  # 50 % of what is available
    keys = client.get("/api/v1/card-auth/keys", headers=device).json()
    assert "PRIVATE" not in keys["certificate_public_key_pem"]
    path = backend.settings.certificate_key_path
    decoded = protocol.verify_balance_certificate(
        load_public_key(path), bytes.fromhex(certs["sugar"]["certificate_hex"])
    )
    assert decoded.serial == SERIAL and decoded.ceiling_qty == 2500


def test_replayed_answer_and_clone_are_refused(
    client: TestClient, auth: Auth, device: dict[str, str], card: CardApplication, store: CardStore
) -> None:
    r, body = _tap(client, device, card)
    assert r.status_code == 200
    again = client.post("/api/v1/card-auth/verify", json=body, headers=device)
    assert again.status_code == 409 and again.json()["error"] == "counter_replayed"
    clone_store = CardStore(store.directory.parent / "clone")
    clone_store.personalise(SERIAL, HolderType.FAMILY)
    ahead = clone_store.load(SERIAL)
    ahead.counter = 1000  # a clone cannot win by running its counter ahead either
    clone_store.save(ahead)
    forged, _ = _tap(client, device, _card(clone_store))
    assert forged.status_code == 409 and forged.json()["error"] == "card_auth_failed"


def test_blocked_card_is_refused_at_the_tap(
    client: TestClient, auth: Auth, device: dict[str, str], card: CardApplication
) -> None:
    registrar = auth(Role.REGISTRAR)
    assert client.post(
        f"/api/v1/cards/{SERIAL}/block", json={"reason": "stolen"}, headers=registrar
    ).is_success
    r, _ = _tap(client, device, card)
    assert r.status_code == 409 and r.json()["error"] == "card_blocked"


def test_signed_redemption_replays_and_refuses_tampering(
    client: TestClient, device: dict[str, str], card: CardApplication
) -> None:
    req = _signed(card, 1000)
    first = client.post("/api/v1/card-auth/redeem", json=req, headers=device)
    assert first.status_code == 200, first.text
    assert (
        first.json()["remaining_qty"] == 4000 and first.json()["balance_certificate"]["ceiling_qty"] == 2000
    )
    retry = client.post("/api/v1/card-auth/redeem", json=req, headers=device)
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    inflated = client.post(
        "/api/v1/card-auth/redeem",
        json={**req, "id": str(uuid.uuid4()), "quantity_qty": 5000},
        headers=device,
    )
    assert inflated.status_code == 409 and inflated.json()["error"] == "card_auth_failed"
    other = client.post("/api/v1/card-auth/redeem", json={**req, "quantity_qty": 999}, headers=device)
    assert other.status_code == 409 and other.json()["error"] == "exists_with_different_payload"
    over = client.post("/api/v1/card-auth/redeem", json=_signed(card, 4001), headers=device)
    assert over.status_code == 409 and over.json()["error"] == "exceeds_allowance"
    elsewhere = client.post("/api/v1/card-auth/redeem", json=_signed(card, 10, point="P2"), headers=device)
    assert elsewhere.status_code == 403 and elsewhere.json()["error"] == "wrong_point"


def test_offline_sync_posts_once_and_reports_what_it_cannot_honour(
    client: TestClient, auth: Auth, device: dict[str, str], card: CardApplication
) -> None:
    fits, too_much = _signed(card, 3000), _signed(card, 3000)
    forged = {**_signed(card, 100), "signature_hex": "00" * 64}
    items = [fits, too_much, forged]
    first = client.post("/api/v1/offline/sync", json={"items": items}, headers=device)
    assert first.status_code == 200, first.text
    results = [(x["status"], x["result"]) for x in first.json()["results"]]
    assert results == [("posted", "ok"), ("conflict", "exceeds_allowance"), ("conflict", "card_auth_failed")]
    again = client.post("/api/v1/offline/sync", json={"items": items}, headers=device)
    assert [(x["status"], x["result"]) for x in again.json()["results"]] == results
    quota = client.get(f"/api/v1/cards/{SERIAL}/quota", headers=auth(Role.CLERK)).json()
    assert next(x for x in quota["lines"] if x["product_code"] == "sugar")["used_qty"] == 3000
    assert client.get("/api/v1/offline/conflicts", headers=device).status_code == 403
    conflicts = client.get("/api/v1/offline/conflicts", headers=auth(Role.SUPERVISOR)).json()
    assert sorted((c["reason"], c["quantity_at_risk_qty"]) for c in conflicts) == [
        ("card_auth_failed", 100),
        ("exceeds_allowance", 3000),
    ]
    assert all(c["holder_type"] == "family" and c["holder_id"] == 1 for c in conflicts)


def test_device_routes_refuse_staff_and_anonymous(client: TestClient, auth: Auth, backend: Backend) -> None:
    assert client.post("/api/v1/card-auth/challenge").status_code == 401
    assert client.post("/api/v1/card-auth/challenge", headers=auth(Role.CLERK)).status_code == 403
    assert client.post("/api/v1/card-auth/challenge", headers=auth(Role.ADMIN)).status_code == 403
