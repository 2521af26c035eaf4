"""The agent prints the citizen's receipt with what the tap answer taught it: product names and units,
the deployment's zone (kept in the outbox for a later run), and from when a too_soon draw is possible."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from reader_agent import protocol
from reader_agent.agent import PointAgent
from reader_agent.card import CardApplication
from reader_agent.client import BackendRefused
from reader_agent.outbox import Outbox
from reader_agent.protocol import HolderType
from reader_agent.receipt import LRM, ProductName
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardState

NOW = dt.datetime(2026, 11, 18, 22, 30, tzinfo=dt.UTC)  # 19 Nov 01:30 in Damascus
LATER = dt.datetime(2026, 11, 19, 22, 30, tzinfo=dt.UTC)
CARD = CardState("V000001", HolderType.VEHICLE, protocol.generate_private_key())


class Backend:
    """Answers a tap as the backend does (names, units, zone); the second fill is too soon."""

    def __init__(self) -> None:
        self.fills = 0

    def challenge(self) -> dict[str, Any]:
        return {"challenge_id": "c1", "challenge_hex": "42" * 16}

    def verify(self, *_: object) -> dict[str, Any]:
        return {"quota": [], "balance_certificates": [], "timezone": "Asia/Damascus",
                "products": [{"code": "gasoline", "name_ar": "بنزين", "name_en": "Gasoline", "unit": "ml"}],
                "point": {"code": "P", "name_ar": "محطة المزة 2", "name_en": "Mezzeh station 2"}}

    def redeem(self, item: dict[str, Any]) -> dict[str, Any]:
        self.fills += 1
        if self.fills > 1:
            raise BackendRefused(409, "too_soon", {"id": item["id"], "result": "too_soon", "quantity_qty": 0,
                                                   "remaining_qty": 20_000, "price_minor": 0,
                                                   "possible_at": LATER.isoformat(), "replayed": False})
        return {"remaining_qty": 20_000, "balance_certificate": None}


class Transport:
    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def transmit(self, command: bytes) -> bytes:
        return self.applet.process(command)

    def close(self) -> None:
        pass


def _agent(outbox: Outbox) -> PointAgent:
    def opener(_: str) -> tuple[Transport, CardApplication]:
        transport = Transport(Applet(CARD, lambda state: None))
        card = CardApplication(transport)
        card.select()
        return transport, card

    return PointAgent(Backend(), outbox, "P", open_card=opener, clock=lambda: NOW)  # type: ignore[arg-type]


def test_the_receipt_names_the_fill_in_litres_and_local_time_and_says_when_next(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    agent = _agent(outbox)
    tap = agent.tap("reader")
    done = agent.redeem(tap, "gasoline", 20_000)
    lines = [line.strip(LRM) for line in done.receipt.splitlines()]
    assert done.ok and "Date: 2026-11-19 01:30 Asia/Damascus" in lines and "Product: Gasoline" in lines
    assert "Quantity: 20 L" in lines and "Remaining: 20 L" in lines and "المادة: بنزين" in lines
    assert "Point: Mezzeh station 2" in lines and "المركز: محطة المزة ٢" in lines  # as the family's message
    again = agent.redeem(tap, "gasoline", 5_000)
    lines = [line.strip(LRM) for line in again.receipt.splitlines()]
    assert again.result == "too_soon" and "Next draw: 2026-11-20 01:30 Asia/Damascus" in lines
    assert "Result: Too soon (too_soon)" in lines and "النتيجة: قبل الموعد المسموح" in lines
    assert "Quantity: 0 L" in lines and "Remaining: 20 L" in lines  # a refusal says what is left
    outbox.close()
    # A later run (offline from the start, say) still knows the names: kept in the outbox.
    restarted = PointAgent(object(), Outbox(tmp_path / "outbox.sqlite3"), "P")  # type: ignore[arg-type]
    assert restarted.catalogue.product("gasoline") == ProductName("بنزين", "Gasoline", "ml")
    assert restarted.catalogue.point_names("P") == ("محطة المزة 2", "Mezzeh station 2")
    assert restarted.catalogue.point_names("Q") == ("Q", "Q")  # another point's receipt keeps its code
