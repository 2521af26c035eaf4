"""Points that keep serving while the backend is away: the workers and the invariant count of the
partition test (tests/chaos/test_partition.py).

Each reader is driven by one thread that plays a queue of families at the counter: it swaps the
virtual card in its reader, lets one of the agents sharing that reader tap and redeem, and goes on.
The agents do not know the backend is gone; they find out from their HTTP client and serve within
the balance certificates on the cards. The main thread can pause every worker between two taps,
which is how the harness takes a consistent look at the cards before the backend comes back.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from reader_agent import protocol
from reader_agent.agent import PointAgent, TapRefused
from reader_agent.outbox import Entry
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from reader_agent.virtual_card.vpcd import VpcdCard
from tests.e2e.pcsc import VirtualReader, open_card_when_present

CARD_PRESENT_TIMEOUT_S = 10.0
# Grams of sugar: small while online so the families still have quota when the backend goes away,
# big afterwards so the outage runs into the ceilings on the cards.
ONLINE_QTY: tuple[int, ...] = (5, 10, 25)
OUTAGE_QTY: tuple[int, ...] = (100, 250, 500, 900)


@dataclass
class Tally:
    """What the workers saw, by outcome (for the printed line and to prove the run did something)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    results: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def count(self, key: str) -> None:
        with self.lock:
            self.results[key] += 1


class Pause:
    """Hold every worker between two taps, and know when they all stand still (or have ended)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._cond = threading.Condition()
        self._requested = False
        self._still = 0
        self._ended = 0

    def hold(self, timeout_s: float = 30.0) -> None:
        with self._cond:
            self._requested = True
            if not self._cond.wait_for(lambda: self._still + self._ended >= self.workers, timeout_s):
                raise AssertionError("a worker did not reach a pause within its time")

    def release(self) -> None:
        with self._cond:
            self._requested = False
            self._cond.notify_all()

    def checkpoint(self) -> None:
        with self._cond:
            if not self._requested:
                return
            self._still += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._requested)
            self._still -= 1

    def ended(self) -> None:
        with self._cond:
            self._ended += 1
            self._cond.notify_all()


class ReaderWorker(threading.Thread):
    """One reader, a few agents taking turns at it, a queue of cards passing through it."""

    def __init__(
        self,
        reader: VirtualReader,
        agents: list[PointAgent],
        serials: list[str],
        store: CardStore,
        *,
        stop: threading.Event,
        pause: Pause,
        tally: Tally,
        seed: int,
    ) -> None:
        super().__init__(name=f"point-{reader.port}", daemon=True)
        self.reader, self.agents, self.serials, self.store = reader, agents, serials, store
        self.stop, self.pause, self.tally = stop, pause, tally
        self.rng = random.Random(seed)
        self.card: VpcdCard | None = None
        self.quantities = ONLINE_QTY
        self.sync_too = threading.Event()  # set once the backend is back: agents also sync between taps

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.pause.checkpoint()
                if self.stop.is_set():
                    break
                self._one_customer()
        except Exception as exc:  # reported by the test, never swallowed
            with self.tally.lock:
                self.tally.errors.append(f"{self.name}: {exc!r}")
        finally:
            self._pull_card()
            self.pause.ended()

    def _pull_card(self) -> None:
        if self.card is not None:
            self.card.remove()
            self.card = None

    def _insert(self, serial: str) -> None:
        self._pull_card()
        card = VpcdCard(Applet(self.store.load(serial), self.store.save), port=self.reader.port).insert()
        if not card.wait_connected(CARD_PRESENT_TIMEOUT_S):
            raise AssertionError(f"card {serial} could not reach vpcd on port {self.reader.port}")
        self.card = card
        open_card_when_present(self.reader.name, CARD_PRESENT_TIMEOUT_S)[0].close()

    def _one_customer(self) -> None:
        self._insert(self.rng.choice(self.serials))
        agent = self.rng.choice(self.agents)
        if self.sync_too.is_set():
            agent.sync()
        try:
            tap = agent.tap(self.reader.name)
        except TapRefused as refused:
            self.tally.count(f"tap_{refused.code}")
            return
        try:
            done = agent.redeem(tap, "sugar", self.rng.choice(self.quantities))
        finally:
            tap.close()
        self.tally.count(f"{'offline' if done.offline else 'online'}_{done.result}")


@dataclass(frozen=True)
class Invariants:
    offline_redemptions: int
    synced: int
    conflicts: int
    dropped: int
    over_ceiling: int
    double_applied: int
    journal_mismatches: int
    at_risk_qty: int

    def line(self) -> str:
        return (
            f"partition: offline_redemptions={self.offline_redemptions} synced={self.synced} "
            f"conflicts={self.conflicts} dropped={self.dropped} over_ceiling={self.over_ceiling} "
            f"double_applied={self.double_applied}"
        )


def served_offline(entries: list[Entry]) -> list[Entry]:
    """Redemptions a point handed out without the backend: signed by the card, then kept for sync."""
    return [e for e in entries if e.mode == "offline" and e.state in ("offline", "synced", "conflict")]


def over_ceiling(
    store: CardStore, serials: list[str], offline_since: list[Entry], now: dt.datetime
) -> tuple[int, dict[tuple[str, str], int]]:
    """Cards whose offline spending went past their certificate: on the card itself, and as served.

    Called while the backend is still away and every worker stands still, so the certificates on
    the cards are the ones every offline redemption of the outage was served against."""
    served: Counter[tuple[str, str]] = Counter()
    for e in offline_since:
        served[(e.card_serial, e.product_code)] += e.quantity_qty
    ceilings: dict[tuple[str, str], int] = {}
    bad = 0
    for serial in serials:
        for slot in store.load(serial).balances.values():
            cert = protocol.decode_balance_certificate(slot.certificate)
            if cert.valid_until <= now:
                continue
            ceilings[(serial, cert.product_code)] = cert.ceiling_qty
            if slot.spent_qty > cert.ceiling_qty:
                bad += 1
    for key, qty in served.items():
        if qty > ceilings.get(key, 0):
            bad += 1
    return bad, ceilings


def check(db: Engine, offline: list[Entry], over: int) -> Invariants:
    """Every offline redemption is in the journal once or in the conflicts list, never both, never lost."""
    with db.connect() as conn:
        journal = Counter(
            str(r[0]) for r in conn.execute(text("SELECT entry_id FROM journal WHERE result = 'ok'"))
        )
        conflict_rows = conn.execute(
            text("SELECT redemption_id, quantity_at_risk_qty FROM offline_conflicts")
        ).all()
        mismatches = conn.scalar(
            text(
                "SELECT count(*) FROM allowances a LEFT JOIN (SELECT allowance_id, sum(quantity_qty) AS s "
                "FROM journal GROUP BY allowance_id) j ON j.allowance_id = a.id "
                "WHERE a.used_qty <> coalesce(j.s, 0) OR a.used_qty < 0 OR a.used_qty > a.granted_qty"
            )
        )
    at_risk = {str(r[0]): int(r[1]) for r in conflict_rows}
    synced = conflicts = dropped = double = 0
    for e in offline:
        posted, conflicted = journal.get(e.id, 0), e.id in at_risk
        if posted > 1 or (posted and conflicted):
            double += 1
        elif posted == 1 and e.state == "synced":
            synced += 1
        elif conflicted and e.state == "conflict" and at_risk[e.id] == e.quantity_qty:
            conflicts += 1
        else:
            dropped += 1
    return Invariants(
        offline_redemptions=len(offline),
        synced=synced,
        conflicts=conflicts,
        dropped=dropped,
        over_ceiling=over,
        double_applied=double,
        journal_mismatches=int(mismatches or 0),
        at_risk_qty=sum(at_risk.get(e.id, 0) for e in offline),
    )
