"""Tap-to-receipt latency and agent throughput through the real stack, on loopback.

Each tap is what a clerk waits for: connect to the card in the reader over PC/SC (pcscd + vpcd +
virtual card), fetch a challenge, INTERNAL AUTHENTICATE, verify at the API, SIGN TRANSACTION, the
signed redemption through the API and the ledger's group commit on PostgreSQL, writing the new
offline certificate to the card, and the receipt. Prints::

    bench tap_p50 <ms> ms
    bench tap_p95 <ms> ms
    bench agent_throughput <n> taps/s      (two readers, one agent each, in parallel)

Usage: .venv/bin/python -m loadtests.bench_tap [--taps 200]  (needs pcscd/vpcd and PostgreSQL;
CARD_TEST_PG_URL names the server, default the CI one at 127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from card_backend.app import create_app
from card_backend.auth.models import User
from card_backend.auth.security import hash_password
from card_backend.config import Settings
from card_backend.db import make_engine, make_session_factory
from card_backend.migrate import upgrade
from reader_agent.agent import PointAgent
from reader_agent.client import BackendClient
from reader_agent.outbox import Outbox
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from reader_agent.virtual_card.vpcd import VpcdCard
from tests.e2e.backend import NOW, enrol_device, register_card, start_backend
from tests.e2e.pcsc import PcscHarness, open_card_when_present
from tests.e2e.server import ServerThread

PG_ADMIN_URL = os.environ.get("CARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _taps(agent: PointAgent, reader: str, count: int, out: list[float]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        tap = agent.tap(reader)
        try:
            done = agent.redeem(tap, "sugar", 1)
        finally:
            tap.close()
        if not done.ok:
            raise RuntimeError(f"tap refused: {done.result}")
        out.append((time.perf_counter() - started) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--taps", type=int, default=200, help="taps for the latency figures")
    args = parser.parse_args()

    name = f"sl_bench_tap_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rpartition("/")[0] + "/" + name
    work = Path(tempfile.mkdtemp(prefix="bench-tap-"))
    db = make_engine(url)
    try:
        upgrade(url)
        settings = Settings(database_url=url, jwt_secret="bench-" + "x" * 40, log_json=True)
        app = create_app(settings, db)
        backend = start_backend(app, db, work / "keys")
        with make_session_factory(db).begin() as session:
            session.add(User(username="bench", password_hash=hash_password("bench-pass-1"), role="registrar"))
        with PcscHarness(readers=2) as pcsc, TestClient(app) as api:
            server = ServerThread(app).start()
            token = api.post("/api/v1/auth/token", data={"username": "bench", "password": "bench-pass-1"})
            registrar = {"Authorization": f"Bearer {token.json()['access_token']}"}
            # Seeded families have 5000 g of sugar: plenty for 1 g per tap.
            store = CardStore(work / "cards")
            agents, cards = [], []
            for index, (serial, point) in enumerate((("F000001", "P1"), ("F000002", "P2"))):
                store.personalise(serial, HolderType.FAMILY)
                register_card(api, registrar, store, serial)
                cards.append(
                    VpcdCard(Applet(store.load(serial), store.save), port=pcsc.reader(index).port).insert()
                )
                open_card_when_present(pcsc.reader(index).name)[0].close()
                device = enrol_device(api, registrar, point)["Authorization"].split()[1]
                agent = PointAgent(
                    BackendClient(server.url, device),
                    Outbox(work / f"outbox-{index}.sqlite3"),
                    point,
                    clock=lambda: NOW,
                )
                agent.load_keys()
                agents.append(agent)
            reader0 = pcsc.reader(0).name
            _taps(agents[0], reader0, 5, [])  # warm-up: connections, caches
            latencies: list[float] = []
            _taps(agents[0], reader0, args.taps, latencies)
            print(f"bench tap_p50 {statistics.median(latencies):.1f} ms")
            print(f"bench tap_p95 {_percentile(latencies, 0.95):.1f} ms")

            per_agent = max(args.taps // 2, 10)
            sinks: list[list[float]] = [[], []]
            threads = [
                threading.Thread(target=_taps, args=(agents[i], pcsc.reader(i).name, per_agent, sinks[i]))
                for i in range(2)
            ]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            print(f"bench agent_throughput {sum(len(s) for s in sinks) / elapsed:.1f} taps/s")
            for card in cards:
                card.remove()
            server.stop()
        backend.close()
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
