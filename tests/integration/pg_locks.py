"""Waiting, in a PostgreSQL test, until another session waits for a lock the test holds."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text


def wait_for_lock_waiter(engine: Engine, what: str, tries: int = 250, pause_s: float = 0.02) -> None:
    """Return once some session waits for a lock (``pg_locks`` not granted); fail naming ``what``."""
    for _ in range(tries):
        with engine.connect() as probe:
            if probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one():
                return
        time.sleep(pause_s)
    raise AssertionError(f"{what} never waited for the lock")
