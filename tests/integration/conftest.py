"""The ledger fixtures the ledger, stock and holds tests share: the seeded population (``ledger_seed``)
served by a running group-commit engine at ``NOW``, directly (``world``) or behind the app (``pop``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from quota.engine import GroupCommitEngine
from quota.redemption import StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, TERMS, Population, seed


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[LedgerService, Population, Engine]]:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        yield LedgerService(engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW), pop, engine


@pytest.fixture
def pop(app, engine: Engine) -> Iterator[Population]:  # type: ignore[no-untyped-def]
    population = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        app.state.ledger = LedgerService(engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW)
        yield population
