"""Helpers shared by the backend-facing e2e tests: a seeded ledger, keys, devices, personalised cards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from card_backend.auth.principal import Role
from card_backend.cardauth.settings import CardAuthSettings
from quota.engine import GroupCommitEngine
from quota.redemption import StaticTerms
from quota.service import LedgerService
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from tests.integration.ledger_seed import T0, TERMS, Population, seed

NOW = T0 + dt.timedelta(days=2)


@dataclass
class Backend:
    app: FastAPI
    engine: GroupCommitEngine
    population: Population
    settings: CardAuthSettings

    def close(self) -> None:
        self.engine.stop()


def start_backend(app: FastAPI, db: Engine, key_dir: Path, **overrides: Any) -> Backend:
    """Seed the ledger population (families F000001.., points P1/P2) and wire a fixed-clock ledger."""
    population = seed(db)
    terms = StaticTerms(TERMS)
    engine = GroupCommitEngine(db, terms, clock=lambda: NOW).start()
    app.state.ledger = LedgerService(db, terms, engine, hold_ttl_s=600, clock=lambda: NOW)
    settings = CardAuthSettings(
        issuer_key_path=key_dir / "issuer.pem", certificate_key_path=key_dir / "certificate.pem", **overrides
    )
    app.state.cardauth_settings = settings
    return Backend(app, engine, population, settings)


def enrol_device(client: TestClient, registrar: dict[str, str], point_code: str) -> dict[str, str]:
    r = client.post(
        f"/api/v1/points/{point_code}/devices", json={"name": f"agent-{point_code}"}, headers=registrar
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def register_card(client: TestClient, registrar: dict[str, str], store: CardStore, serial: str) -> None:
    """Tell the backend the card's public key and write the issuer's certificate onto the card."""
    state = store.load(serial)
    r = client.post(
        f"/api/v1/card-auth/cards/{serial}/key",
        json={"public_key_hex": state.public_key.hex()},
        headers=registrar,
    )
    assert r.status_code == 200, r.text
    state.card_certificate = bytes.fromhex(r.json()["card_certificate_hex"])
    store.save(state)


__all__ = ["NOW", "Backend", "Role", "enrol_device", "register_card", "start_backend"]


class Direct:
    """The virtual card's applet as the reader (no pcscd): what a card answers, without the PC/SC stack."""

    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def transmit(self, command: bytes) -> bytes:
        return self.applet.process(command)
