"""Headless mode: the agent driven by a script of JSON lines, for tests, demos and load.

Each input line is one of::

    {"reader": "Virtual PCD 00 00", "product_code": "sugar", "quantity_qty": 1000}
    {"reader": "Virtual PCD 00 00"}                       # tap only: authenticate and show quota
    {"action": "sync"}                                    # send what was served offline
    {"action": "wait_card", "reader": "...", "timeout_s": 10}

and produces one JSON line: the result code, whether it was served offline, the redemption id,
the receipt text and the tap-to-receipt latency in milliseconds. `watch` instead taps every card
inserted in any reader (pyscard's monitors, through monitor.ReaderWatcher).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from reader_agent.agent import PointAgent, TapRefused
from reader_agent.monitor import CardEvent, ReaderWatcher

CARD_WAIT_STEP_S = 0.05


def _tap_and_redeem(agent: PointAgent, step: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    reader = str(step["reader"])
    try:
        tap = agent.tap(reader)
    except TapRefused as exc:
        return {"reader": reader, "result": exc.code, "latency_ms": _ms(started)}
    try:
        out: dict[str, Any] = {"reader": reader, "card_serial": tap.info.serial, "online": tap.online}
        if "product_code" not in step:
            out.update(result="ok", quota=tap.quota)
        else:
            done = agent.redeem(tap, str(step["product_code"]), int(step["quantity_qty"]))
            out.update(
                result=done.result,
                offline=done.offline,
                redemption_id=done.redemption_id,
                quantity_qty=done.quantity_qty,
                remaining_qty=done.remaining_qty,
                receipt=done.receipt,
            )
    finally:
        tap.close()
    out["latency_ms"] = _ms(started)
    return out


def _wait_card(agent: PointAgent, step: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + float(step.get("timeout_s", 10))
    reader = str(step["reader"])
    while time.monotonic() < deadline:
        try:
            transport, _card = agent.open_card(reader)
        except Exception:  # any failure here means "not there yet"
            time.sleep(CARD_WAIT_STEP_S)
            continue
        transport.close()
        return {"action": "wait_card", "reader": reader, "result": "ok"}
    return {"action": "wait_card", "reader": reader, "result": "timeout"}


def run(agent: PointAgent, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for raw in lines:
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        try:
            step = json.loads(raw)
        except json.JSONDecodeError:
            yield {"result": "invalid_script_line", "line": raw[:200]}
            continue
        action = step.get("action", "tap")
        if action == "sync":
            yield {"action": "sync", "result": "ok", **agent.sync()}
        elif action == "wait_card":
            yield _wait_card(agent, step)
        elif action == "tap" and "reader" in step:
            yield _tap_and_redeem(agent, step)
        else:
            yield {"result": "invalid_script_line", "line": raw[:200]}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def watch(agent: PointAgent, events: ReaderWatcher, stop: threading.Event) -> Iterator[dict[str, Any]]:
    """Hot-plug mode: every card inserted in any reader is tapped at once and its quota reported."""
    while not stop.is_set():
        event = events.next_event(0.2)
        if isinstance(event, CardEvent) and event.kind == "inserted":
            yield {"event": "inserted", **_tap_and_redeem(agent, {"reader": event.reader})}
        elif isinstance(event, CardEvent):
            yield {"event": "removed", "reader": event.reader, "result": "ok"}
        elif event is not None:
            yield {"event": f"reader_{event.kind}", "reader": event.reader, "result": "ok"}
