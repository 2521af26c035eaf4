"""Issue 7 item 4: an APDU fuzzer against the reader agent's card handling, with the real API on
PostgreSQL behind the agent.

A hostile card (an `Applet` subclass) computes the genuine answer to every command, then garbles
some of them — random bytes, flipped bits, truncation, junk appended, a foreign status word, an
answer replayed from an earlier command — and ALWAYS garbles its answer to SIGN TRANSACTION, the
one answer that authorises a debit. Whatever it says, the agent must not crash (it ends in a named
refusal the clerk sees) and must not produce a redemption: nothing in its outbox sent, served
offline or waiting to be sent, nothing in the backend's journal, no conflict to sync.

Several hundred seeded cases go through the pure path (the applet is the transport; the backend is
real, online or unreachable for an offline agent); a few dozen go through pcscd + vpcd.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from reader_agent import apdu
from reader_agent.agent import PointAgent, TapRefused
from reader_agent.card import CardApplication
from reader_agent.client import BackendClient
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardState, CardStore
from reader_agent.virtual_card.vpcd import VpcdCard
from tests.e2e.conftest import CARD_PRESENT_TIMEOUT_S, Cards
from tests.e2e.pcsc import PcscHarness, open_card_when_present
from tests.e2e.server import free_port
from tests.e2e.stack import Stack, running_stack

SERIAL = "F000001"
PURE_CASES = 400
PCSC_CASES = 40
GARBLE_RATES = (0.0, 0.05, 0.15, 0.4, 1.0)  # share of the other answers garbled, drawn per case
NOT_A_REDEMPTION = {"refused", "abandoned"}  # outbox states in which nothing was or will be debited
SNAKE = re.compile(r"^[a-z]+(_[a-z]+)*$")


def garble(answer: bytes, rng: random.Random, earlier: list[bytes]) -> bytes:
    """A different answer in one of the ways a broken or hostile card could give one."""
    data, sw = answer[:-2], answer[-2:]
    mode = rng.randrange(8)
    if mode == 0:
        out = rng.randbytes(rng.randrange(0, 259))
    elif mode == 1:
        flipped = bytearray(answer)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        out = bytes(flipped)
    elif mode == 2:
        out = answer[: rng.randrange(len(answer))]
    elif mode == 3:
        out = data + rng.randbytes(rng.randint(1, 40)) + sw
    elif mode == 4:
        out = data + rng.randbytes(2)
    elif mode == 5:
        out = rng.randbytes(2)
    elif mode == 6:  # plausible TLV, wrong content
        body = b"".join(
            bytes([rng.randrange(256), n]) + rng.randbytes(n)
            for n in (rng.randrange(0, 70) for _ in range(rng.randint(1, 5)))
        )
        out = body + b"\x90\x00"
    else:  # an answer the card gave to another command
        out = rng.choice(earlier) if earlier else answer[::-1]
    if out == answer:
        out = answer + b"\x00"
    return out


class HostileApplet(Applet):
    """The genuine applet underneath, garbling what leaves the card (`rate`; SIGN TRANSACTION always)."""

    def __init__(self, state: CardState, store: CardStore) -> None:
        super().__init__(state, store.save)
        self.rng = random.Random(0)
        self.rate = 0.0
        self.garble_sign = True
        self.earlier: list[bytes] = []
        self.garbled: Counter[str] = Counter()
        self.on_a_wire = False  # through vpcd: every answer carries at least SW1 SW2, at most 258 bytes

    def process(self, raw: bytes) -> bytes:
        answer = super().process(raw)
        ins = raw[1] if len(raw) > 1 else -1
        signing = ins == apdu.INS_SIGN_TRANSACTION and self.garble_sign
        if signing or self.rng.random() < self.rate:
            self.garbled[f"{ins:02X}"] += 1
            out = garble(answer, self.rng, self.earlier)
            if self.on_a_wire and not 2 <= len(out) <= 258:
                out = out[:256] + self.rng.randbytes(2)
        else:
            out = answer
        self.earlier.append(answer)
        del self.earlier[:-8]
        return out


class AppletTransport:
    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def transmit(self, command: bytes) -> bytes:
        return self.applet.process(command)

    def close(self) -> None:
        self.applet.reset()


def _opener(applet: Applet):  # type: ignore[no-untyped-def]
    def open_card(_: str) -> tuple[AppletTransport, CardApplication]:
        transport = AppletTransport(applet)
        card = CardApplication(transport)
        card.select()
        return transport, card

    return open_card


class Outcomes:
    """Named endings seen, and any that break the rules (kept with the seed that produced them)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.broken: list[str] = []
        self.redeems = 0

    def case(self, agent: PointAgent, reader: str, seed: int, quantity_qty: int) -> None:
        try:
            tap = agent.tap(reader)
        except TapRefused as refused:
            self._named(f"tap:{refused.code}", refused.code, seed)
            return
        except Exception as exc:  # the very thing the fuzzer looks for: reported with its seed
            self.broken.append(f"seed {seed}: tap crashed with {exc!r}")
            return
        try:
            self.redeems += 1
            done = agent.redeem(tap, "sugar", quantity_qty)
        except Exception as exc:
            self.broken.append(f"seed {seed}: redeem crashed with {exc!r}")
            return
        finally:
            tap.close()
        self._named(f"redeem:{done.result}", done.result, seed)
        entry = agent.outbox.get(done.redemption_id)
        if done.ok or entry is None or entry.state not in NOT_A_REDEMPTION:
            state = None if entry is None else entry.state
            self.broken.append(f"seed {seed}: redemption produced ({done.result}, outbox {state})")

    def _named(self, key: str, code: str, seed: int) -> None:
        self.seen[key] += 1
        if not SNAKE.match(code) or code == "ok":
            self.broken.append(f"seed {seed}: {key} is not a named refusal")


def _no_debit_anywhere(db: Engine, agents: list[PointAgent]) -> None:
    for agent in agents:
        assert agent.outbox.depth() == 0
        assert not agent.outbox.entries("sent", "offline", "synced", "signed", "conflict")
        assert agent.sync() == {}
    with db.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM journal")) == 0
        assert conn.scalar(text("SELECT count(*) FROM offline_conflicts")) == 0
        assert conn.scalar(text("SELECT coalesce(sum(used_qty), 0) FROM allowances")) == 0


@pytest.fixture
def bare_stack(pg_engine: Engine, tmp_path: Path) -> Iterator[Stack]:
    """The API on PostgreSQL over loopback HTTP without pcscd: the card is the agent's transport."""
    yield from running_stack(pg_engine, Cards(tmp_path), tmp_path)


def test_garbled_card_answers_never_crash_the_agent_nor_debit(bare_stack: Stack, pg_engine: Engine) -> None:
    stack = bare_stack
    stack.card(SERIAL)
    store = stack.cards.store()
    applet = HostileApplet(store.load(SERIAL), store)
    online, offline = stack.agent("P1"), stack.agent("P2")
    for agent in (online, offline):
        agent.open_card = _opener(applet)
    applet.garble_sign = False
    offline.tap("warm-up").close()  # genuine online tap: the card gets its offline allowance
    applet.garble_sign = True
    live = offline.client
    offline.client = BackendClient(f"http://127.0.0.1:{free_port()}", "unused", timeout_s=1.0)
    outcomes = Outcomes()
    for seed in range(PURE_CASES):
        applet.rng = random.Random(seed)
        applet.rate = applet.rng.choice(GARBLE_RATES)
        agent = online if seed % 2 else offline
        outcomes.case(agent, "fuzz", seed, applet.rng.randint(1, 5))
    offline.client.close()
    offline.client = live
    print(
        f"\napdu_fuzz pure: cases={PURE_CASES} redeems_attempted={outcomes.redeems} crashes=0 "
        f"redemptions=0 garbled_by_ins={dict(sorted(applet.garbled.items()))} "
        f"outcomes={dict(sorted(outcomes.seen.items()))}"
    )
    assert not outcomes.broken, outcomes.broken[:10]
    assert outcomes.redeems >= PURE_CASES // 4, "too few cases reached the debit for the test to mean much"
    _no_debit_anywhere(pg_engine, [online, offline])


def test_garbled_card_answers_through_pcscd_never_crash_the_agent_nor_debit(
    pcsc: PcscHarness, stack: Stack, pg_engine: Engine
) -> None:
    stack.card(SERIAL)
    store = stack.cards.store()
    applet = HostileApplet(store.load(SERIAL), store)
    applet.on_a_wire = True
    reader = pcsc.reader(0)
    card = VpcdCard(applet, port=reader.port).insert()
    stack.cards.inserted.append(card)
    assert card.wait_connected(CARD_PRESENT_TIMEOUT_S)
    open_card_when_present(reader.name)[0].close()
    agent = stack.agent("P1")
    outcomes = Outcomes()
    for seed in range(PCSC_CASES):
        applet.rng = random.Random(10_000 + seed)
        applet.rate = applet.rng.choice(GARBLE_RATES)
        outcomes.case(agent, reader.name, seed, applet.rng.randint(1, 5))
    print(
        f"\napdu_fuzz pcscd: cases={PCSC_CASES} redeems_attempted={outcomes.redeems} "
        f"garbled_by_ins={dict(sorted(applet.garbled.items()))} "
        f"outcomes={dict(sorted(outcomes.seen.items()))}"
    )
    assert not outcomes.broken, outcomes.broken[:10]
    assert outcomes.redeems > 0
    _no_debit_anywhere(pg_engine, [agent])
