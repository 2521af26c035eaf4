"""Every debit reaches the family as a message, once, even across a sender outage."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine

from quota.engine import GroupCommitEngine
from quota.message_repository import message_states
from quota.notify import Notifier
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, seed

NOW = T0 + timedelta(days=2)


def states_of(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return message_states(conn)


class FlakySender:
    channel = "sms"

    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, str]] = []

    def send(self, recipient: str, text: str) -> None:
        if not self.up:
            raise ConnectionError("gateway down")
        self.sent.append((recipient, text))


def test_messages_queued_once_per_debit_and_delivered_after_an_outage(engine: Engine) -> None:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    clock = [NOW]
    sender = FlakySender()
    notifier = Notifier(engine, sender, clock=lambda: clock[0])
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        debit = svc.redeem(Redemption(str(uuid.uuid4()), pop.member_cards[1][0], "sugar", 1500, "P1"))
        svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[2], "sugar", 9999, "P1"))  # refused
        hold = str(uuid.uuid4())
        svc.hold(hold, pop.family_card[2], "diesel", 30_000, "P2")
        svc.post(hold, 20_000)
        svc.reverse(str(uuid.uuid4()), debit.entry_id, "double debit", "user:sup")
    sender.up = False
    assert notifier.collect() == 3  # redeem, post, reverse; not the refusal nor the hold itself
    assert notifier.collect() == 0  # the saved position: queued once
    assert notifier.deliver() == (0, 3)
    states = states_of(engine)
    assert {m["state"] for m in states} == {"pending"} and all(m["attempts"] == 1 for m in states)
    assert "gateway down" in states[0]["last_error"]
    sender.up = True
    assert notifier.deliver() == (0, 0)  # back-off: not due yet
    clock[0] = NOW + timedelta(minutes=1)
    assert notifier.deliver() == (3, 0)
    assert [m["state"] for m in states_of(engine)] == ["sent"] * 3
    first = sender.sent[0]
    assert first[0] == "+963900000001"
    assert "1.5 kg Sugar at Outlet 1; remaining 3.5 kg" in first[1]
    assert "سكر" in first[1] and "١٫٥" not in first[1] and "١.٥ كغ" in first[1]
    assert debit.entry_id[:8].upper() in first[1]
    assert "20 L Diesel at Outlet 2" in sender.sent[1][1]
    assert "credited back 1.5 kg" in sender.sent[2][1]


def test_http_gateway_sender_retries_until_the_gateway_answers(engine: Engine) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from quota.notify import HttpSmsSender, make_sender

    received: list[dict[str, str]] = []
    status = [503]

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if status[0] == 200:
                received.append(body)
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        pop = seed(engine)
        terms = StaticTerms(TERMS)
        with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
            LedgerService(engine, terms, eng).redeem(
                Redemption(str(uuid.uuid4()), pop.family_card[3], "sugar", 250, "P2"))
        sender = make_sender(f"http://127.0.0.1:{server.server_port}/sms")
        assert isinstance(sender, HttpSmsSender)
        clock = [NOW]
        notifier = Notifier(engine, sender, clock=lambda: clock[0])
        assert notifier.run_once() == (1, 0, 1)  # gateway answers 503: kept, retried later
        status[0] = 200
        clock[0] = NOW + timedelta(minutes=5)
        assert notifier.run_once() == (0, 1, 0)
        assert received[0]["to"] == "+963900000003" and "0.25 kg Sugar at Outlet 2" in received[0]["text"]
    finally:
        server.shutdown()
