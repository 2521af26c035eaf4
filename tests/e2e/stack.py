"""The whole point-of-sale stack for e2e tests: API on PostgreSQL over loopback HTTP, pcscd + vpcd,
virtual cards, and reader agents in-process (headless), each enrolled as a device at its point."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from card_backend.app import create_app
from card_backend.auth.models import User
from card_backend.auth.security import hash_password
from card_backend.config import Settings
from card_backend.db import make_session_factory
from reader_agent.agent import PointAgent
from reader_agent.client import BackendClient
from reader_agent.outbox import Outbox
from reader_agent.protocol import HolderType
from tests.e2e.backend import NOW, Backend, enrol_device, register_card, start_backend
from tests.e2e.conftest import Cards
from tests.e2e.server import ServerThread

PASSWORD = "e2e-password-123"


@dataclass
class Stack:
    api: TestClient
    server: ServerThread
    backend: Backend
    cards: Cards
    tmp: Path
    staff: dict[str, dict[str, str]] = field(default_factory=dict)
    agents: list[PointAgent] = field(default_factory=list)

    def card(self, serial: str, *, store: str = "main") -> None:
        """Personalise a virtual card and register its key (the issuer certificate goes on the card)."""
        cards = self.cards.personalise(serial, HolderType.FAMILY, store=store)
        register_card(self.api, self.staff["registrar"], cards, serial)

    def agent(self, point_code: str, *, timeout_s: float = 2.0) -> PointAgent:
        token = enrol_device(self.api, self.staff["registrar"], point_code)["Authorization"].split()[1]
        client = BackendClient(self.server.url, token, timeout_s=timeout_s)
        outbox = Outbox(self.tmp / f"outbox-{point_code}-{len(self.agents)}.sqlite3")
        agent = PointAgent(client, outbox, point_code, clock=lambda: NOW)
        assert agent.load_keys()
        self.agents.append(agent)
        return agent

    def quota(self, serial: str, product: str = "sugar") -> dict[str, int]:
        lines = self.api.get(f"/api/v1/cards/{serial}/quota", headers=self.staff["clerk"]).json()["lines"]
        return next(line for line in lines if line["product_code"] == product)

    def close(self) -> None:
        for agent in self.agents:
            agent.client.close()
            agent.outbox.close()
        self.server.stop()
        self.backend.close()


def running_stack(pg_engine: Engine, cards: Cards, tmp_path: Path) -> Iterator[Stack]:
    """Body of the ``stack`` fixture (tests/e2e/conftest.py)."""
    settings = Settings(database_url=str(pg_engine.url), jwt_secret="e2e-secret-" + "x" * 40, log_json=True)
    app = create_app(settings, pg_engine)
    backend = start_backend(app, pg_engine, tmp_path / "keys")
    password_hash = hash_password(PASSWORD)
    with make_session_factory(pg_engine).begin() as session:
        for role in ("registrar", "clerk", "supervisor", "admin"):
            session.add(User(username=f"e2e-{role}", password_hash=password_hash, role=role, point_id=None))
    server = ServerThread(app).start()
    with TestClient(app) as api:
        staff = {}
        for role in ("registrar", "clerk", "supervisor", "admin"):
            r = api.post("/api/v1/auth/token", data={"username": f"e2e-{role}", "password": PASSWORD})
            assert r.status_code == 200, r.text
            staff[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
        running = Stack(api, server, backend, cards, tmp_path, staff)
        try:
            yield running
        finally:
            running.close()
