"""Alembic is the only schema source: every revision upgrades and downgrades, on both databases."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect, text

from card_backend.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL


def _round_trip(url: str) -> None:
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        assert {"allowances", "allowance_grants", "grant_runs", "journal"} <= tables
    command.downgrade(alembic_config(url), "base")
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(url)  # and back up again, cleanly


def test_every_revision_downgrades_and_upgrades_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'm.sqlite3'}")


def test_every_revision_downgrades_and_upgrades_on_postgresql() -> None:
    name = f"sl_mig_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _round_trip(f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
