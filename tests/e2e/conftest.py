"""Fixtures for the end-to-end tests through the real pcscd + vpcd stack.

When the stack is missing these tests skip on a developer machine but FAIL
when CI=true, so a CI image without pcscd cannot pass by skipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI
from sqlalchemy import Engine

from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from reader_agent.virtual_card.vpcd import VpcdCard
from tests.e2e.backend import Backend, start_backend
from tests.e2e.pcsc import PcscHarness, VirtualReader, running_harness

if TYPE_CHECKING:
    from tests.e2e.stack import Stack

CARD_PRESENT_TIMEOUT_S = 10.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            # Under xdist (--dist loadgroup) every reader test runs on one worker: one pcscd per machine.
            item.add_marker(pytest.mark.xdist_group("pcsc"))


@pytest.fixture(scope="package")
def pcsc() -> Iterator[PcscHarness]:
    """pcscd with two vpcd readers for the e2e package; stopped (lock released) after its last test."""
    with running_harness(readers=2) as harness:
        yield harness


class Cards:
    """Personalise and insert virtual cards; everything inserted is removed at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inserted: list[VpcdCard] = []

    def store(self, name: str = "main") -> CardStore:
        return CardStore(self.root / name)

    def personalise(
        self, serial: str, holder_type: HolderType = HolderType.FAMILY, *, store: str = "main"
    ) -> CardStore:
        cards = self.store(store)
        cards.personalise(serial, holder_type)
        return cards

    def insert(self, serial: str, reader: VirtualReader, *, store: str = "main") -> VpcdCard:
        cards = self.store(store)
        card = VpcdCard(Applet(cards.load(serial), cards.save), port=reader.port).insert()
        self.inserted.append(card)
        if not card.wait_connected(CARD_PRESENT_TIMEOUT_S):
            raise AssertionError(f"virtual card {serial} could not reach vpcd on port {reader.port}")
        return card

    def remove_all(self) -> None:
        while self.inserted:
            self.inserted.pop().remove()


@pytest.fixture
def cards(pcsc: PcscHarness, tmp_path: Path) -> Iterator[Cards]:
    helper = Cards(tmp_path)
    yield helper
    helper.remove_all()


@pytest.fixture
def stack(pg_engine: Engine, cards: Cards, tmp_path: Path) -> Iterator[Stack]:
    """API on PostgreSQL over loopback HTTP + pcscd + virtual cards; agents from ``stack.agent(point)``."""
    from tests.e2e.stack import running_stack

    yield from running_stack(pg_engine, cards, tmp_path)


@pytest.fixture
def backend(app: FastAPI, engine: Engine, tmp_path: Path) -> Iterator[Backend]:
    """The app with card authentication keys and a running ledger (``tests.e2e.backend``)."""
    running = start_backend(app, engine, tmp_path / "keys")
    yield running
    running.close()
