"""`python -m reader_agent.demo`: show one tap end to end against a running demo API.

What `make demo` needs from the card side: it signs in as the demo admin, picks a family card with
quota and a point serving it, personalises a virtual card with that serial (key in var/cards),
registers its key (the issuer certificate goes on the card), enrols a device at the point, inserts
the card into "Virtual PCD 00 00" (starting pcscd with the vpcd readers if none is running, under
the shared lock), taps, redeems a small quantity and prints the receipt. Then it serves the clerk
page on 127.0.0.1:8001 with the same agent; the card stays in the reader until Ctrl-C, so the
clerk page, `scriptor` and `opensc-tool` can all talk to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from reader_agent.agent import PointAgent
from reader_agent.client import BackendClient
from reader_agent.outbox import Outbox, OutboxBusy
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from reader_agent.virtual_card.vpcd import VpcdCard

READER = "Virtual PCD 00 00"
PORT = 35963


def _wait_healthy(api: httpx.Client, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if api.get("/health").status_code == 200:
                return
        time.sleep(0.5)
    raise SystemExit("demo tap: the API did not come up")


def _choose(api: httpx.Client, families: int = 50) -> tuple[str, str, str, int]:
    """A family card with some quota left, and a point serving that product."""
    points = api.get("/api/v1/points", params={"limit": 1000}).json()
    for family_id in range(1, families + 1):
        cards = api.get(f"/api/v1/holders/family/{family_id}/cards").json()
        for card in cards if isinstance(cards, list) else []:
            if card.get("state") != "active":
                continue
            lines = api.get(f"/api/v1/cards/{card['serial']}/quota").json().get("lines", [])
            for line in lines:
                point = next(
                    (p for p in points if line["product_code"] in p["products"] and p["active"]), None
                )
                if point and line["available_now_qty"] > 0:
                    qty = max(1, min(line["available_now_qty"] // 10, 1000))
                    return card["serial"], point["code"], line["product_code"], qty
    raise SystemExit("demo tap: no family card with quota found")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--username", default="admin")
    # from the environment by default: a password on the command line is visible to every local user
    # (ps), and a generated one may begin with "-", which argparse would take for an option
    parser.add_argument("--password", default=os.environ.get("DEMO_ADMIN_PASSWORD"),
                        help="default: $DEMO_ADMIN_PASSWORD")
    parser.add_argument("--state-dir", type=Path, default=Path("var/cards"))
    parser.add_argument("--clerk-port", type=int, default=8001, help="clerk page on 127.0.0.1 (0: none)")
    args = parser.parse_args(argv)
    if not args.password:
        parser.error("the admin password: --password or DEMO_ADMIN_PASSWORD")
    return args


def main() -> None:
    args = parse_args()

    api = httpx.Client(base_url=args.api, timeout=10)
    _wait_healthy(api)
    token = api.post("/api/v1/auth/token", data={"username": args.username, "password": args.password})
    token.raise_for_status()
    api.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    serial, point, product, qty = _choose(api)

    store = CardStore(args.state_dir)
    if not store.exists(serial):
        store.personalise(serial, HolderType.FAMILY)
    state = store.load(serial)
    cert: Any = api.post(
        f"/api/v1/card-auth/cards/{serial}/key", json={"public_key_hex": state.public_key.hex()}
    )
    cert.raise_for_status()
    state.card_certificate = bytes.fromhex(cert.json()["card_certificate_hex"])
    store.save(state)
    device = api.post(f"/api/v1/points/{point}/devices", json={"name": "demo-agent"})
    device.raise_for_status()

    try:  # before any reader or card is set up: a second demo on this outbox leaves nothing behind
        outbox = Outbox(args.state_dir.parent / "agent" / "demo-outbox.sqlite3")
    except OutboxBusy as exc:
        raise SystemExit(f"demo tap: {exc}") from None
    harness = _ensure_readers()
    card = VpcdCard(Applet(state, store.save), port=PORT).insert()
    client = BackendClient(args.api, device.json()["token"])
    agent = PointAgent(client, outbox, point)
    agent.load_keys()
    try:
        tap = _tap_when_present(agent)
        try:
            print(f"demo tap: card {serial} at point {point}: redeeming {qty} of {product}", flush=True)
            print(agent.redeem(tap, product, qty).receipt, flush=True)
        finally:
            tap.close()
        print(f"demo tap: card {serial} stays in {READER!r}; Ctrl-C removes it", flush=True)
        if args.clerk_port:
            import uvicorn

            from reader_agent.ui.app import create_clerk_app

            print(f"demo tap: clerk page on http://127.0.0.1:{args.clerk_port}/", flush=True)
            # uvicorn re-raises the signal that stopped it once it has shut down: make SIGTERM, like
            # Ctrl-C, an exception here so the card is removed and pcscd stopped on the way out.
            signal.signal(signal.SIGTERM, _interrupt)
            with contextlib.suppress(KeyboardInterrupt):
                uvicorn.run(
                    create_clerk_app(agent, [READER]),
                    host="127.0.0.1",
                    port=args.clerk_port,
                    log_level="warning",
                )
        else:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
            stop.wait()
    finally:
        card.remove()
        client.close()
        if harness is not None:
            harness.stop()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _tap_when_present(agent: PointAgent, timeout_s: float = 15) -> Any:
    from reader_agent.agent import TapRefused

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return agent.tap(READER)
        except TapRefused as exc:
            if exc.code != "card_removed" or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ensure_readers() -> Any:
    """Use a running pcscd with vpcd readers, or start one with the test harness (under its lock)."""
    from reader_agent.reader import ReaderError, list_readers

    with contextlib.suppress(ReaderError):
        if READER in list_readers():
            return None
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.e2e.pcsc import PcscHarness

    harness = PcscHarness(readers=2, takeover=False)
    harness.start()
    return harness


if __name__ == "__main__":
    main()
