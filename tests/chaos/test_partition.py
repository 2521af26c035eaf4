"""Partition test (issue 7 item 3, DESIGN invariant 6): points lose the backend mid-run, keep serving
offline within the ceilings signed onto the cards, and sync when it comes back.

Four reader agents (two points, two devices each) share the two vpcd readers of the real pcscd stack;
nine virtual cards of three families pass through them. Offline ceilings are 100 % of what is left,
so family and member cards tapped at different points overspend their family while the backend is
away, and sync must report conflicts rather than drop or double-apply anything.

Aimed only at 127.0.0.1, bounded in time (``--chaos-profile``), and it stops by itself.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from reader_agent.agent import PointAgent
from reader_agent.outbox import Entry
from tests.chaos import partition
from tests.e2e.backend import NOW
from tests.e2e.conftest import Cards
from tests.e2e.pcsc import PcscHarness, running_harness
from tests.e2e.stack import Stack, running_stack

pytestmark = pytest.mark.chaos

READER_CARDS = (
    ["F000001", "M000001", "F000002", "M000003"],
    ["M000002", "F000003", "M000004", "M000005", "M000006"],
)
PHASES = (0.3, 0.4, 0.3)  # online, partitioned, healed: shares of the chaos profile's seconds
SYNC_ATTEMPTS = 20


@pytest.fixture
def pcsc() -> Iterator[PcscHarness]:
    with running_harness(readers=2) as harness:
        yield harness


@pytest.fixture
def stack(pcsc: PcscHarness, pg_engine: Engine, tmp_path: Path) -> Iterator[Stack]:
    cards = Cards(tmp_path)
    try:
        yield from running_stack(pg_engine, cards, tmp_path)
    finally:
        cards.remove_all()


def _all_entries(agents: list[PointAgent]) -> list[Entry]:
    states = ("offline", "synced", "conflict", "signed", "sent", "refused", "abandoned", "created")
    return [e for a in agents for e in a.outbox.entries(*states, limit=1_000_000)]


def test_points_serve_offline_within_ceilings_and_sync_everything_once(
    pcsc: PcscHarness, stack: Stack, pg_engine: Engine, chaos_seconds: float, report: Callable[[str], None]
) -> None:
    stack.backend.settings.offline_share_percent = 100
    serials = [s for group in READER_CARDS for s in group]
    for serial in serials:
        stack.card(serial)
    agents_by_reader = [[stack.agent("P1"), stack.agent("P2")] for _ in READER_CARDS]
    agents = [a for group in agents_by_reader for a in group]
    store = stack.cards.store()
    stop, pause, tally = threading.Event(), partition.Pause(len(READER_CARDS)), partition.Tally()
    workers = [
        partition.ReaderWorker(
            pcsc.reader(i),
            agents_by_reader[i],
            list(group),
            store,
            stop=stop,
            pause=pause,
            tally=tally,
            seed=11 + i,
        )
        for i, group in enumerate(READER_CARDS)
    ]
    online_s, partitioned_s, healed_s = (chaos_seconds * share for share in PHASES)
    depth_peak = 0
    try:
        for worker in workers:
            worker.start()
        time.sleep(online_s)
        for worker in workers:
            worker.quantities = partition.OUTAGE_QTY
        cut_at = dt.datetime.now(dt.UTC)
        stack.server.stop()  # mid-run: taps in flight lose the backend wherever they are
        deadline = time.monotonic() + partitioned_s
        while time.monotonic() < deadline:
            depth_peak = max(depth_peak, sum(a.outbox.depth() for a in agents))
            time.sleep(0.5)
        pause.hold()  # every worker between two taps: the cards hold the outage's certificates
        during = [e for e in partition.served_offline(_all_entries(agents)) if e.created_at >= cut_at]
        over, ceilings = partition.over_ceiling(store, serials, during, NOW)
        depth_at_heal = sum(a.outbox.depth() for a in agents)
        stack.server.start()
        for worker in workers:
            worker.sync_too.set()
        pause.release()
        time.sleep(healed_s)
    finally:
        stop.set()
        pause.release()
        for worker in workers:
            worker.join(timeout=30)
    for _ in range(SYNC_ATTEMPTS):
        for agent in agents:
            agent.sync()
        if sum(a.outbox.depth() for a in agents) == 0:
            break
        time.sleep(0.2)
    depth_after = sum(a.outbox.depth() for a in agents)
    inv = partition.check(pg_engine, partition.served_offline(_all_entries(agents)), over)
    # Debits whose answer was lost and that were not handed over: each is either absent from the
    # journal's debits or credited back by a reversal — no family pays for goods it did not get.
    undone = [e.id for a in agents for e in a.outbox.entries("undone", limit=1_000_000)]
    with pg_engine.connect() as conn:
        still_charged = conn.scalar(text(
            "SELECT count(*) FROM journal d WHERE d.entry_id = ANY(:ids) AND d.kind = 'redeem' "
            "AND d.result = 'ok' AND NOT EXISTS (SELECT 1 FROM journal r WHERE r.ref_entry_id = d.entry_id "
            "AND r.kind = 'reverse' AND r.result = 'ok')"), {"ids": undone})
    report(
        f"{inv.line()}\npartition_detail: journal_mismatches={inv.journal_mismatches} "
        f"at_risk_qty={inv.at_risk_qty} "
        f"served_in_outage={len(during)} outbox_depth_peak={depth_peak} at_heal={depth_at_heal} "
        f"after_sync={depth_after} undone_by_advice={len(undone)} still_charged={still_charged} "
        f"cards_with_ceiling={len(ceilings)} "
        f"taps={dict(sorted(tally.results.items()))}"
    )
    assert not tally.errors, tally.errors
    assert not any(w.is_alive() for w in workers)
    assert len(during) >= 3, "too few offline redemptions for the test to mean anything"
    assert depth_at_heal >= len(during) > 0
    assert depth_after == 0
    assert inv.dropped == 0
    assert inv.over_ceiling == 0
    assert inv.double_applied == 0
    assert still_charged == 0
    assert inv.journal_mismatches == 0
    assert inv.synced + inv.conflicts == inv.offline_redemptions
