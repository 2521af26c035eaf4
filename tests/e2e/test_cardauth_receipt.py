"""The tap answer carries what the citizen's receipt needs and a redemption does not: the products' names
and units and the deployment's zone; a too_soon refusal carries from when. Driven by the applet itself
(no pcscd), on SQLite and PostgreSQL like test_cardauth_api.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from card_backend.auth.principal import Role
from reader_agent import protocol, receipt
from reader_agent.card import CardApplication
from reader_agent.protocol import HolderType
from reader_agent.receipt import LRM, ReceiptData
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from tests.e2e.backend import NOW, Backend, Direct, enrol_device, register_card

SERIAL = "F000001"


@pytest.fixture
def card(client: TestClient, auth: Any, backend: Backend, tmp_path: Path) -> CardApplication:
    store = CardStore(tmp_path / "cards")
    store.personalise(SERIAL, HolderType.FAMILY)
    register_card(client, auth(Role.REGISTRAR), store, SERIAL)
    app = CardApplication(Direct(Applet(store.load(SERIAL), store.save)))
    app.select()
    return app


def _tap(client: TestClient, device: dict[str, str], card: CardApplication) -> dict[str, Any]:
    ch = client.post("/api/v1/card-auth/challenge", headers=device).json()
    answer = card.authenticate(bytes.fromhex(ch["challenge_hex"]))
    body = {"challenge_id": ch["challenge_id"], "card_serial": SERIAL, "counter": answer.counter,
            "signature_hex": answer.signature.hex()}
    r = client.post("/api/v1/card-auth/verify", json=body, headers=device)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _redeem(client: TestClient, device: dict[str, str], card: CardApplication, product: str, qty: int) -> Any:
    rid = uuid.uuid4()
    signed = card.sign_transaction(protocol.transaction_digest(rid, product, qty, "P1"))
    item = {"id": str(rid), "card_serial": SERIAL, "product_code": product, "quantity_qty": qty,
            "point_code": "P1", "counter": signed.counter, "signature_hex": signed.signature.hex()}
    return client.post("/api/v1/card-auth/redeem", json=item, headers=device)


def test_the_tap_answer_names_the_products_and_the_zone(
    app: FastAPI, client: TestClient, auth: Any, card: CardApplication
) -> None:
    device = enrol_device(client, auth(Role.REGISTRAR), "P1")
    body = _tap(client, device, card)
    products = {p["code"]: p for p in body["products"]}
    assert products["sugar"] == {"code": "sugar", "name_ar": "سكر", "name_en": "Sugar", "unit": "g"}
    assert products["diesel"]["unit"] == "ml" and products["gas"]["name_en"] == "Gas cylinder"
    assert body["timezone"] == "Asia/Damascus"  # CARD_TIMEZONE's default
    assert body["point"] == {"code": "P1", "name_ar": "مركز ١", "name_en": "Outlet 1"}  # as families know it
    app.state.settings = app.state.settings.model_copy(update={"timezone": "Europe/Berlin"})
    assert _tap(client, device, card)["timezone"] == "Europe/Berlin"


def test_a_too_soon_receipt_names_the_product_and_says_from_when(
    client: TestClient, auth: Any, card: CardApplication
) -> None:
    device = enrol_device(client, auth(Role.REGISTRAR), "P1")
    catalogue = receipt.Catalogue().updated(_tap(client, device, card))
    first = _redeem(client, device, card, "diesel", 20_000)
    assert first.status_code == 200, first.text
    again = _redeem(client, device, card, "diesel", 5_000)  # within the minimum gap of a day
    assert again.status_code == 409 and again.json()["error"] == "too_soon", again.text
    when = receipt.possible_at(again.json()["detail"])
    assert when is not None and when > NOW
    data = ReceiptData("P1", SERIAL, "diesel", 5_000, "too_soon", str(uuid.uuid4()), None, False, NOW, when)
    lines = [line.strip(LRM) for line in receipt.render(data, catalogue).splitlines()]
    local = when.astimezone(catalogue.zone).strftime("%Y-%m-%d %H:%M")
    assert "Product: Diesel" in lines and "المادة: مازوت" in lines and "Quantity: 0 L" in lines
    assert f"Next draw: {local} Asia/Damascus" in lines
