"""Issue 4 "Must show": the reader agent redeeming through pcscd + vpcd + virtual cards + the API on
PostgreSQL, including a backend outage with offline service and sync, and a two-point conflict."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reader_agent.agent import PointAgent, TapRefused
from reader_agent.client import BackendRefused, BackendUnavailable
from tests.e2e.backend import enrol_device
from tests.e2e.pcsc import PcscHarness, open_card_when_present
from tests.e2e.stack import Stack

SERIAL = "F000001"  # family 1 of the seeded ledger: 5000 g of sugar available


def _ready(pcsc: PcscHarness, index: int = 0) -> str:
    reader = pcsc.reader(index).name
    open_card_when_present(reader)[0].close()
    return reader


def _online_agent(pcsc: PcscHarness, stack: Stack) -> tuple[str, PointAgent]:
    """Family 1's card in reader 0 and point P1's agent, after one online tap: the card holds its
    offline allowance (ceiling 2500 g of sugar)."""
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    reader = _ready(pcsc)
    agent = stack.agent("P1")
    agent.tap(reader).close()
    return reader, agent


def test_happy_path_debits_once_and_prints_a_bilingual_receipt(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    tap = agent.tap(_ready(pcsc))
    try:
        assert tap.online and tap.info.serial == SERIAL
        assert next(q for q in tap.quota if q["product_code"] == "sugar")["available_now_qty"] == 5000
        done = agent.redeem(tap, "sugar", 1000)
    finally:
        tap.close()
    assert done.ok and not done.offline and done.remaining_qty == 4000
    assert (
        "تمت العملية" in done.receipt
        and "Quantity: 1 kg" in done.receipt  # sugar is counted in g, shown in kg as the SMS does
        and "Product: Sugar" in done.receipt
        and done.redemption_id in done.receipt
    )
    assert stack.quota(SERIAL)["used_qty"] == 1000
    entry = agent.outbox.get(done.redemption_id)
    assert entry is not None and entry.state == "sent"


def test_blocked_card_is_refused(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card(SERIAL)
    stack.api.post(
        f"/api/v1/cards/{SERIAL}/block", json={"reason": "stolen"}, headers=stack.staff["registrar"]
    )
    stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    with pytest.raises(TapRefused) as refused:
        agent.tap(_ready(pcsc))
    assert refused.value.code == "card_blocked"


def test_exceeding_the_allowance_debits_nothing(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    tap = agent.tap(_ready(pcsc))
    try:
        done = agent.redeem(tap, "sugar", 5001)
    finally:
        tap.close()
    assert done.result == "exceeds_allowance" and "Quantity: 0" in done.receipt
    assert stack.quota(SERIAL)["used_qty"] == 0


def test_cloned_card_is_refused(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card(SERIAL)
    stack.cards.personalise(SERIAL, store="clone")  # same serial, its own key
    stack.cards.insert(SERIAL, pcsc.reader(0), store="clone")
    agent = stack.agent("P1")
    with pytest.raises(TapRefused) as refused:
        agent.tap(_ready(pcsc))
    assert refused.value.code == "card_auth_failed"


def test_replayed_authentication_is_refused(pcsc: PcscHarness, stack: Stack) -> None:
    """A copy of the card taken earlier (same key, older counter) cannot authenticate again."""
    stack.card(SERIAL)
    main = stack.cards.store()
    shutil.copytree(main.directory, stack.cards.root / "copy")
    card = stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    agent.tap(_ready(pcsc)).close()
    card.remove()
    stack.cards.insert(SERIAL, pcsc.reader(0), store="copy")
    with pytest.raises(TapRefused) as refused:
        agent.tap(_ready(pcsc))
    assert refused.value.code == "counter_replayed"


def test_card_removed_mid_transaction_leaves_nothing_half_done(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card(SERIAL)
    card = stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    tap = agent.tap(_ready(pcsc))
    card.remove()
    try:
        done = agent.redeem(tap, "sugar", 1000)
    finally:
        tap.close()
    assert done.result == "card_removed" and not done.ok
    assert stack.quota(SERIAL)["used_qty"] == 0
    entry = agent.outbox.get(done.redemption_id)
    assert entry is not None and entry.state == "abandoned"
    assert agent.sync() == {}  # nothing to send, ever


def test_backend_down_serves_offline_within_the_ceiling_then_syncs_exactly_once(
    pcsc: PcscHarness, stack: Stack
) -> None:
    reader, agent = _online_agent(pcsc, stack)  # the card now holds its offline allowance (2500 g)
    stack.server.stop()
    results = []
    for qty in (1000, 1000, 1000, 500):
        tap = agent.tap(reader)
        try:
            assert not tap.online
            results.append(agent.redeem(tap, "sugar", qty))
        finally:
            tap.close()
    assert [(r.result, r.offline) for r in results] == [
        ("ok", True),
        ("ok", True),
        ("exceeds_offline_ceiling", True),
        ("ok", True),
    ]
    assert "OFFLINE" in results[0].receipt
    assert agent.sync() == {}  # still down: kept for later
    stack.server.start()
    assert agent.sync() == {"synced": 3}
    assert agent.sync() == {}
    assert stack.quota(SERIAL)["used_qty"] == 2500
    assert agent.outbox.counts().get("synced") == 3


def test_two_offline_points_overspending_one_family_is_a_reported_conflict(
    pcsc: PcscHarness, stack: Stack
) -> None:
    stack.backend.settings.offline_share_percent = 100
    family_card, member_card = "F000002", "M000003"  # both draw on family 2's 5000 g
    stack.card(family_card)
    stack.card(member_card)
    stack.cards.insert(family_card, pcsc.reader(0))
    stack.cards.insert(member_card, pcsc.reader(1))
    first, second = stack.agent("P1"), stack.agent("P2")
    first.tap(_ready(pcsc, 0)).close()
    second.tap(_ready(pcsc, 1)).close()
    stack.server.stop()
    for agent, index, qty in ((first, 0, 4000), (second, 1, 3000)):
        tap = agent.tap(pcsc.reader(index).name)
        try:
            assert agent.redeem(tap, "sugar", qty).result == "ok"
        finally:
            tap.close()
    stack.server.start()
    assert first.sync() == {"synced": 1}
    assert second.sync() == {"conflict": 1}
    conflicts = stack.api.get("/api/v1/offline/conflicts", headers=stack.staff["supervisor"]).json()
    assert [
        (c["card_serial"], c["reason"], c["quantity_at_risk_qty"], c["holder_type"], c["holder_id"])
        for c in conflicts
    ] == [(member_card, "exceeds_allowance", 3000, "person", 3)]  # the member's card, of family 2
    assert stack.quota(family_card)["used_qty"] == 4000


def test_headless_agent_runs_a_script_of_taps(pcsc: PcscHarness, stack: Stack, tmp_path: Path) -> None:
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    reader = _ready(pcsc)
    token = enrol_device(stack.api, stack.staff["registrar"], "P1")["Authorization"].split()[1]
    script = "\n".join(
        json.dumps(step)
        for step in (
            {"action": "wait_card", "reader": reader},
            {"reader": reader},
            {"reader": reader, "product_code": "sugar", "quantity_qty": 700},
            {"reader": pcsc.reader(1).name, "product_code": "sugar", "quantity_qty": 1},
            {"action": "sync"},
        )
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "reader_agent.cli",
            "agent",
            "--backend",
            stack.server.url,
            "--point",
            "P1",
            "--outbox",
            str(tmp_path / "headless.sqlite3"),
            "--script",
            "-",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "READER_AGENT_TOKEN": token},
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["result"] for line in lines] == ["ok", "ok", "ok", "card_removed", "ok"]
    assert lines[2]["remaining_qty"] == 4300 and "تمت العملية" in lines[2]["receipt"]
    assert stack.quota(SERIAL)["used_qty"] == 700


def test_backend_lost_between_tap_and_confirm_serves_the_signed_debit_offline_and_syncs_it(
    pcsc: PcscHarness, stack: Stack
) -> None:
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    agent = stack.agent("P1")
    tap = agent.tap(_ready(pcsc))
    try:
        assert tap.online
        stack.server.stop()
        done = agent.redeem(tap, "sugar", 800)
    finally:
        tap.close()
    assert (done.result, done.offline) == ("ok", True) and "OFFLINE" in done.receipt
    assert agent.sync() == {}
    stack.server.start()
    assert agent.sync() == {"synced": 1}
    assert stack.quota(SERIAL)["used_qty"] == 800


def test_a_debit_whose_answer_was_lost_and_nothing_handed_over_is_undone_by_sync(
    pcsc: PcscHarness, stack: Stack
) -> None:
    """The backend debited, the answer never came back, the card's offline ceiling then refused: the
    family was charged for goods it did not get until sync sends reversal advice."""
    reader, agent = _online_agent(pcsc, stack)
    real = agent.client.redeem

    def answer_lost(item: dict[str, object]) -> dict[str, object]:
        real(item)  # the backend debits...
        raise BackendUnavailable("connection reset before the answer")  # ...and the answer is lost

    agent.client.redeem = answer_lost  # type: ignore[method-assign]
    tap = agent.tap(reader)
    try:
        done = agent.redeem(tap, "sugar", 3000)
    finally:
        tap.close()
    assert (done.result, done.offline, done.quantity_qty) == ("exceeds_offline_ceiling", True, 0)
    assert stack.quota(SERIAL)["used_qty"] == 3000  # debited, nothing handed over
    assert agent.outbox.depth() == 1
    assert agent.sync() == {"undone": 1}
    assert stack.quota(SERIAL)["used_qty"] == 0
    entry = agent.outbox.get(done.redemption_id)
    assert entry is not None and (entry.state, entry.result) == ("undone", "reversed")
    assert agent.sync() == {} and agent.outbox.depth() == 0


def test_a_debit_that_never_arrived_and_was_not_handed_over_can_never_debit_later(
    pcsc: PcscHarness, stack: Stack
) -> None:
    reader, agent = _online_agent(pcsc, stack)
    tap = agent.tap(reader)
    try:
        assert tap.online
        stack.server.stop()  # the signed debit goes nowhere
        done = agent.redeem(tap, "sugar", 3000)
    finally:
        tap.close()
    assert done.result == "exceeds_offline_ceiling"
    assert agent.sync() == {}  # still down: the advice waits
    stack.server.start()
    assert agent.sync() == {"undone": 1}
    entry = agent.outbox.get(done.redemption_id)
    assert entry is not None and (entry.state, entry.result) == ("undone", "voided")
    assert entry.counter is not None and entry.signature is not None
    signed = agent._item(entry.id, entry.card_serial, entry.product_code, entry.quantity_qty, entry.counter,
                         entry.signature)
    with pytest.raises(BackendRefused) as late:  # the signed debit arriving after all cannot debit
        agent.client.redeem(signed)
    assert late.value.code == "exists_with_different_payload"
    assert stack.quota(SERIAL)["used_qty"] == 0


class _Crash(BaseException):
    """The agent's process dies (power cut) between the backend's answer and the receipt."""


def test_a_debit_cut_off_by_an_agent_crash_is_in_doubt_when_it_restarts_and_undone(
    pcsc: PcscHarness, stack: Stack
) -> None:
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    reader = _ready(pcsc)
    agent = stack.agent("P1")
    real = agent.client.redeem

    def applied_then_crash(item: dict[str, object]) -> dict[str, object]:
        real(item)
        raise _Crash

    agent.client.redeem = applied_then_crash  # type: ignore[method-assign]
    tap = agent.tap(reader)
    try:
        with pytest.raises(_Crash):
            agent.redeem(tap, "sugar", 1200)
    finally:
        tap.close()
    assert stack.quota(SERIAL)["used_qty"] == 1200  # debited; no receipt was ever shown
    restarted = PointAgent(agent.client, agent.outbox, "P1")
    assert restarted.recovered == {"abandoned": 0, "in_doubt": 1}
    restarted.client.redeem = real  # type: ignore[method-assign]
    assert restarted.sync() == {"undone": 1}
    assert stack.quota(SERIAL)["used_qty"] == 0


def test_unsynced_offline_spending_lowers_the_next_offline_ceiling(pcsc: PcscHarness, stack: Stack) -> None:
    """The card reports its offline spending; until a point syncs it, the backend won't certify it again."""
    stack.card(SERIAL)
    stack.cards.insert(SERIAL, pcsc.reader(0))
    reader = _ready(pcsc)
    offline_point, online_point = stack.agent("P1"), stack.agent("P2")
    offline_point.tap(reader).close()
    stack.server.stop()
    tap = offline_point.tap(reader)
    try:
        assert offline_point.redeem(tap, "sugar", 2000).result == "ok"
    finally:
        tap.close()
    stack.server.start()
    tap = online_point.tap(reader)  # P1 has not synced yet
    tap.close()
    assert tap.balances["sugar"].certificate.ceiling_qty == 1500  # 50 % of (5000 - 2000 pending)
    assert offline_point.sync() == {"synced": 1}
    tap = online_point.tap(reader)
    tap.close()
    assert tap.balances["sugar"].certificate.ceiling_qty == 1500  # 50 % of 3000, not counted twice


def test_watching_agent_taps_each_card_plugged_into_any_reader(
    pcsc: PcscHarness, stack: Stack, tmp_path: Path
) -> None:
    stack.card(SERIAL)
    token = enrol_device(stack.api, stack.staff["registrar"], "P1")["Authorization"].split()[1]
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reader_agent.cli",
            "agent",
            "--backend",
            stack.server.url,
            "--point",
            "P1",
            "--outbox",
            str(tmp_path / "watch.sqlite3"),
            "--watch",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "READER_AGENT_TOKEN": token},
    )
    try:
        time.sleep(1.5)  # let the monitors take their first look at the empty readers
        stack.cards.insert(SERIAL, pcsc.reader(1))
        assert agent.stdout is not None
        lines = (json.loads(raw) for raw in agent.stdout)  # first the readers present are announced
        line = next(item for item in lines if item["event"] == "inserted")
        assert (line["event"], line["reader"], line["card_serial"], line["result"]) == (
            "inserted",
            pcsc.reader(1).name,
            SERIAL,
            "ok",
        )
        assert any(q["product_code"] == "sugar" for q in line["quota"])
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=20)
