"""The quota a clerk and a citizen see is what the ledger grants (an audit's findings), on SQLite and
PostgreSQL, through the real HTTP app with the demo rules.

"Available now" (``GET /api/v1/cards/{serial}/quota``, the tap's answer, hence the clerk page) is the
most one redemption at that moment is granted: each case redeems exactly that (``ok`` when above 0)
and one unit more (refused). The tap signs the card's offline ceiling from it, so an offline point
never hands out what the ledger would refuse: no certificate exceeds it. Cases: a government car (one
fill of at most 50 L a day), a private car tied to its station (20 L a fill), a pump hold pending on
it, a blocked card, and a family waiting for the next heating-diesel batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from card_backend.cardauth.settings import CardAuthSettings
from quota.opening import open_due
from quota.redemption import RuleTerms
from quota.service import LedgerService
from reader_agent import protocol
from reader_agent.card import CardApplication
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from tests.e2e.backend import Direct, enrol_device, register_card
from tests.integration.rules_seed import seed_world

TZ = ZoneInfo("Asia/Damascus")  # the deployment's calendar (Settings' default)
PRODUCTS = ["gasoline", "heating_diesel", "gas_cylinder", "bread", "sugar", "rice", "tea", "points"]
OCT20 = datetime(2026, 10, 20, 9, tzinfo=UTC)
NOV18 = datetime(2026, 11, 18, 9, tzinfo=UTC)


class World:
    """The demo world (rules_seed) behind the real app: points P and Q serving everything, a ledger
    whose clock the test moves, a clerk, a registrar, a device per point and personalised cards."""

    def __init__(self, factory: sessionmaker[Session], engine: Engine, app: FastAPI, client: TestClient,
                 auth: Callable[..., dict[str, str]], tmp: Path) -> None:
        self.factory, self.client = factory, client
        self.clock = [NOV18]
        with factory.begin() as s:
            seed_world(s, [("P", "state_outlet", PRODUCTS), ("Q", "state_outlet", PRODUCTS)],
                       [("family", h) for h in (1, 2, 3)] + [("vehicle", v) for v in (1, 4)])
        self.ledger = LedgerService(engine, RuleTerms(), clock=lambda: self.clock[0])
        app.state.ledger = self.ledger
        app.state.cardauth_settings = CardAuthSettings(issuer_key_path=tmp / "issuer.pem",
                                                       certificate_key_path=tmp / "certificate.pem")
        self.clerk = auth(Role.CLERK)
        self.registrar = auth(Role.REGISTRAR)
        self.devices = {p: enrol_device(client, self.registrar, p) for p in ("P", "Q")}
        self.store = CardStore(tmp / "cards")
        self.cards: dict[str, CardApplication] = {}

    def stop(self) -> None:
        if self.ledger.engine is not None:
            self.ledger.engine.stop()

    def at(self, now: datetime) -> None:
        """Move the ledger's clock and open what has begun, as the worker does."""
        self.clock[0] = now
        with self.factory.begin() as s:
            open_due(s, now, tz=TZ)

    def card(self, serial: str) -> CardApplication:
        if serial not in self.cards:
            self.store.personalise(serial, HolderType.VEHICLE if serial[0] == "V" else HolderType.FAMILY)
            register_card(self.client, self.registrar, self.store, serial)
            self.cards[serial] = CardApplication(Direct(Applet(self.store.load(serial), self.store.save)))
            self.cards[serial].select()
        return self.cards[serial]

    def quota(self, serial: str) -> dict[str, dict[str, Any]]:
        r = self.client.get(f"/api/v1/cards/{serial}/quota", headers=self.clerk)
        assert r.status_code == 200, r.text
        return {line["product_code"]: line for line in r.json()["lines"]}

    def redeem(self, serial: str, product: str, qty: int, point: str = "P") -> str:
        r = self.client.post("/api/v1/redemptions", headers=self.clerk, json={
            "id": str(uuid.uuid4()), "card_serial": serial, "product_code": product, "quantity_qty": qty,
            "point_code": point})
        assert r.status_code in (200, 409), r.text
        return str(r.json()["result"] if r.status_code == 200 else r.json()["error"])

    def tap(self, serial: str, point: str = "P") -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        """The card taps at ``point``: its quota lines there and the offline ceiling signed per product.
        Every ceiling is at most what one redemption there is granted now."""
        card, device = self.card(serial), self.devices[point]
        challenge = self.client.post("/api/v1/card-auth/challenge", headers=device).json()
        answer = card.authenticate(bytes.fromhex(challenge["challenge_hex"]))
        r = self.client.post("/api/v1/card-auth/verify", headers=device, json={
            "challenge_id": challenge["challenge_id"], "card_serial": serial, "counter": answer.counter,
            "signature_hex": answer.signature.hex()})
        assert r.status_code == 200, r.text
        lines = {line["product_code"]: line for line in r.json()["quota"]}
        ceilings = {c["product_code"]: c["ceiling_qty"] for c in r.json()["balance_certificates"]}
        for product, ceiling in ceilings.items():
            assert ceiling <= lines[product]["available_now_qty"], (product, ceiling, lines[product])
        return lines, ceilings

    def offline(self, serial: str, product: str, qty: int, point: str = "P") -> dict[str, Any]:
        """A point served ``qty`` offline with the card's signature; it syncs now."""
        rid = uuid.uuid4()
        signed = self.card(serial).sign_transaction(protocol.transaction_digest(rid, product, qty, point))
        r = self.client.post("/api/v1/offline/sync", headers=self.devices[point], json={"items": [{
            "id": str(rid), "card_serial": serial, "product_code": product, "quantity_qty": qty,
            "point_code": point, "counter": signed.counter, "signature_hex": signed.signature.hex()}]})
        assert r.status_code == 200, r.text
        return dict(r.json()["results"][0])

    def exact(self, serial: str, product: str, point: str = "P") -> int:
        """Redeem one unit more than the quota's "available now" (refused), then exactly it (granted
        when above 0); answers the figure."""
        available = int(self.quota(serial)[product]["available_now_qty"])
        assert self.redeem(serial, product, available + 1, point) != "ok", (product, available)
        if available > 0:
            assert self.redeem(serial, product, available, point) == "ok", (product, available)
        return available


@pytest.fixture
def w(session_factory: sessionmaker[Session], engine: Engine, app: FastAPI, client: TestClient,
      auth: Callable[..., dict[str, str]], tmp_path: Path) -> Iterator[World]:
    world = World(session_factory, engine, app, client, auth, tmp_path)
    world.at(NOV18)
    yield world
    world.stop()


def test_a_government_car_sees_one_fill_of_at_most_50_l_a_day(w: World) -> None:
    """800 L a month, at most 50 L a fill, one fill a day: 50 L available before the fill (not 800),
    nothing after it until the gap ends (not 750 L, nor a 375 L offline ceiling)."""
    lines, ceilings = w.tap("V000004")
    assert lines["gasoline"]["available_now_qty"] == w.quota("V000004")["gasoline"]["available_now_qty"]
    assert w.exact("V000004", "gasoline") == 50_000
    line = w.quota("V000004")["gasoline"]
    assert (line["remaining_qty"], line["available_now_qty"]) == (750_000, 0)
    tomorrow = NOV18 + timedelta(days=1)
    assert line["next_possible_at"] == tomorrow.isoformat().replace("+00:00", "Z")
    assert w.redeem("V000004", "gasoline", 1) == "too_soon"
    lines, ceilings = w.tap("V000004")
    assert (lines["gasoline"]["available_now_qty"], ceilings["gasoline"]) == (0, 0)
    w.at(tomorrow - timedelta(seconds=1))
    assert w.exact("V000004", "gasoline") == 0
    w.at(tomorrow)
    assert w.exact("V000004", "gasoline") == 50_000


def test_what_a_government_car_may_draw_offline_the_ledger_posts(w: World) -> None:
    """The offline ceiling signed at the tap is served in full offline and posted on sync (before, the
    tap signed 400 L: a fill the ledger refuses ``exceeds_fill_cap``); after it, the next tap signs 0
    until the gap ends."""
    _, ceilings = w.tap("V000004")
    assert 0 < ceilings["gasoline"] <= 50_000
    synced = w.offline("V000004", "gasoline", ceilings["gasoline"])
    assert (synced["status"], synced["result"]) == ("posted", "ok"), synced
    lines, ceilings = w.tap("V000004")
    assert (lines["gasoline"]["available_now_qty"], ceilings["gasoline"]) == (0, 0)


def test_a_private_car_sees_one_fill_of_20_l_at_its_own_station(w: World) -> None:
    """20 L a fill of a 40 L window, tied to its first station: 20 L available (not 40 L); at another
    station nothing, and the certificate signed there is 0."""
    assert w.quota("V000001")["gasoline"]["remaining_qty"] == 40_000
    assert w.exact("V000001", "gasoline") == 20_000  # binds the car to P
    line = w.quota("V000001")["gasoline"]
    assert (line["home_point_code"], line["remaining_qty"], line["available_now_qty"]) == (
        "P", 20_000, 20_000)
    lines, ceilings = w.tap("V000001", "Q")
    assert (lines["gasoline"]["available_now_qty"], ceilings["gasoline"]) == (0, 0)
    assert w.redeem("V000001", "gasoline", 1, "Q") == "point_not_bound"
    lines, ceilings = w.tap("V000001", "P")
    assert lines["gasoline"]["available_now_qty"] == 20_000 and 0 < ceilings["gasoline"] <= 20_000
    assert w.exact("V000001", "gasoline") == 20_000
    assert w.exact("V000001", "gasoline") == 0


def test_nothing_is_available_while_the_pump_runs(w: World) -> None:
    """A station-bound car fills one pump at a time: while a hold is pending the quota shows 0 (not the
    30 L left), the tap signs 0; once the hold is voided the fill is available again."""
    hold_id = str(uuid.uuid4())
    r = w.client.post("/api/v1/holds", headers=w.clerk, json={
        "id": hold_id, "card_serial": "V000001", "product_code": "gasoline", "quantity_qty": 10_000,
        "point_code": "P"})
    assert r.status_code == 200 and r.json()["result"] == "ok", r.text
    line = w.quota("V000001")["gasoline"]
    assert (line["held_qty"], line["remaining_qty"], line["available_now_qty"]) == (10_000, 30_000, 0)
    assert line["next_possible_at"] is None  # when the pump stops is not the ledger's to know
    assert w.exact("V000001", "gasoline") == 0
    assert w.redeem("V000001", "gasoline", 1) == "too_soon"
    lines, ceilings = w.tap("V000001")
    assert (lines["gasoline"]["available_now_qty"], ceilings["gasoline"]) == (0, 0)
    r = w.client.post(f"/api/v1/holds/{hold_id}/void", headers=w.clerk)
    assert r.status_code == 200, r.text
    assert w.exact("V000001", "gasoline") == 20_000


@pytest.mark.parametrize("move", ["block", "lost"])
def test_a_blocked_card_says_so_and_offers_nothing(w: World, move: str) -> None:
    """Every redemption with a blocked (or lost) card is ``card_blocked``: its quota keeps the month's
    figures (a replacement card draws on them) but says the card's state and why, with nothing
    available now."""
    before = w.quota("F000003")
    r = w.client.post(f"/api/v1/cards/F000003/{move}", headers=w.registrar,
                      json={"reason": "stolen at the souk"})
    assert r.status_code == 200, r.text
    after = w.quota("F000003")
    assert after.keys() == before.keys() and {"sugar", "bread", "rice"} <= after.keys()
    state = "blocked" if move == "block" else "lost"
    for product, line in after.items():
        figures = ("granted_qty", "used_qty", "held_qty", "remaining_qty", "period_end")
        assert {k: line[k] for k in figures} == {k: before[product][k] for k in figures}
        assert line["card_state"] == state
        assert line["card_state_reason"].startswith("stolen at the souk")  # as recorded (and by whom)
        assert (line["available_now_qty"], line["next_possible_at"]) == (0, None)
        assert w.exact("F000003", product) == 0
        if line["remaining_qty"] > 0:
            assert w.redeem("F000003", product, 1) == "card_blocked"
    assert all(line["card_state"] == "active" and line["card_state_reason"] is None
               for line in w.quota("F000001").values())


def test_a_family_that_drew_the_first_batch_sees_the_date_of_the_next(w: World) -> None:
    """Heating diesel, 2 × 100 L a winter with a catch-up batch for families not served: a family that
    drew batch 1 waits for batch 3 (the catch-up batch is not theirs) and is told its date; a family
    that drew nothing draws the catch-up at once."""
    w.at(OCT20)
    assert w.redeem("F000001", "heating_diesel", 100_000) == "ok"
    w.at(datetime(2026, 11, 29, 9, tzinfo=UTC))  # after the catch-up batch (day 45), before batch 3
    line = w.quota("F000001")["heating_diesel"]
    assert (line["remaining_qty"], line["available_now_qty"]) == (150_000, 0)
    batch3 = datetime(2026, 10, 15, tzinfo=TZ) + timedelta(days=75)  # the season starts 15 Oct, local
    assert line["next_possible_at"] == batch3.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert w.exact("F000001", "heating_diesel") == 0
    lines, ceilings = w.tap("F000001")
    assert (lines["heating_diesel"]["available_now_qty"], ceilings["heating_diesel"]) == (0, 0)
    assert w.exact("F000002", "heating_diesel") == 250_000  # catch-up: the whole winter, free slice too
    w.at(batch3 - timedelta(seconds=1))
    assert w.exact("F000001", "heating_diesel") == 0
    w.at(batch3)
    line = w.quota("F000001")["heating_diesel"]
    assert (line["available_now_qty"], line["next_possible_at"]) == (150_000, None)
    _, ceilings = w.tap("F000001")
    assert 0 < ceilings["heating_diesel"] <= 150_000
    assert w.exact("F000001", "heating_diesel") == 150_000
