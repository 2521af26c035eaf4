"""Issue 7's APDU fuzzer at the agent: a card answering garbage never crashes the agent and never
produces a redemption the genuine card did not sign.

The card and the backend are test doubles of the agent's ports (transport, client): the applet
itself answers, except one answer replaced by random bytes; the backend checks signatures as the
real one does and records every redemption it receives.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reader_agent import protocol
from reader_agent.agent import PointAgent, TapRefused
from reader_agent.card import CardApplication
from reader_agent.client import BackendRefused
from reader_agent.outbox import Outbox
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardState

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
CARD = CardState("FUZZ-1", HolderType.FAMILY, protocol.generate_private_key())
PUBLIC = CARD.public_key


class GarblingTransport:
    """The applet's answers, except answer number `index`, which becomes `garbage`."""

    def __init__(self, applet: Applet, index: int, garbage: bytes) -> None:
        self.applet, self.index, self.garbage, self.count = applet, index, garbage, 0

    def transmit(self, command: bytes) -> bytes:
        answer = self.applet.process(command)
        self.count += 1
        return self.garbage if self.count - 1 == self.index else answer

    def close(self) -> None:
        pass


class StrictBackend:
    """Checks what the real backend checks; remembers the redemptions it accepted."""

    def __init__(self) -> None:
        self.challenge_bytes = b"\x42" * 16
        self.accepted: list[dict[str, Any]] = []

    def public_keys(self) -> dict[str, str]:
        raise BackendRefused(403, "forbidden", None)

    def challenge(self) -> dict[str, Any]:
        return {"challenge_id": "c1", "challenge_hex": self.challenge_bytes.hex()}

    def verify(
        self, challenge_id: str, serial: str, counter: int, signature: bytes, offline: object = None
    ) -> dict[str, Any]:
        message = protocol.auth_message(self.challenge_bytes, serial, counter)
        if serial != CARD.serial or not protocol.verify_card_signature(PUBLIC, message, signature):
            raise BackendRefused(409, "card_auth_failed", None)
        return {"quota": [], "balance_certificates": []}

    def redeem(self, item: dict[str, Any]) -> dict[str, Any]:
        digest = protocol.transaction_digest(
            uuid.UUID(item["id"]), item["product_code"], item["quantity_qty"], item["point_code"]
        )
        message = protocol.transaction_message(digest, item["card_serial"], item["counter"])
        if not protocol.verify_card_signature(PUBLIC, message, bytes.fromhex(item["signature_hex"])):
            raise BackendRefused(409, "card_auth_failed", None)
        self.accepted.append(item)
        return {"remaining_qty": 0, "balance_certificate": None}


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, 14), garbage=st.binary(max_size=80))
def test_garbled_card_answers_end_in_a_refusal_or_a_genuinely_signed_debit(
    index: int, garbage: bytes
) -> None:
    backend = StrictBackend()
    outbox = Outbox(Path(":memory:"))
    applet = Applet(CARD, lambda state: None)
    transport = GarblingTransport(applet, index, garbage)

    def opener(_: str) -> tuple[GarblingTransport, CardApplication]:
        card = CardApplication(transport)
        card.select()
        return transport, card

    agent = PointAgent(backend, outbox, "P1", open_card=opener, clock=lambda: NOW)  # type: ignore[arg-type]
    try:
        tap = agent.tap("fuzz reader")
    except TapRefused as refused:
        assert refused.code in {"card_malformed", "card_refused", "card_removed", "card_auth_failed"}
        assert not backend.accepted
        return
    result = agent.redeem(tap, "sugar", 1000)
    assert result.result in {"ok", "card_removed", "card_malformed", "card_refused", "card_auth_failed"}
    assert len(backend.accepted) == (1 if result.ok else 0)
    entry = outbox.get(result.redemption_id)
    assert entry is not None and entry.state in {"sent", "abandoned", "refused"}


def test_a_garbled_signature_answer_online_is_named_so_and_debits_nothing() -> None:
    """The clerk is told the card answered nonsense — not that it was taken away — and the
    redemption is abandoned before it reaches the backend."""
    backend = StrictBackend()
    outbox = Outbox(Path(":memory:"))
    transport = GarblingTransport(Applet(CARD, lambda state: None), 10**6, b"")

    def opener(_: str) -> tuple[GarblingTransport, CardApplication]:
        card = CardApplication(transport)
        card.select()
        return transport, card

    agent = PointAgent(backend, outbox, "P1", open_card=opener, clock=lambda: NOW)  # type: ignore[arg-type]
    tap = agent.tap("reader")
    transport.index, transport.garbage = transport.count, b"\x90\x00"  # the next answer: OK, no body
    result = agent.redeem(tap, "sugar", 1000)
    assert result.result == "card_malformed" and not result.ok
    assert not backend.accepted
    entry = outbox.get(result.redemption_id)
    assert entry is not None and entry.state == "abandoned"
    assert "غير صالح" in result.receipt
