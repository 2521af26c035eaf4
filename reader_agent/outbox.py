"""The agent's local outbox (SQLite): every redemption id is written here BEFORE anything is sent.

A redemption's life: ``created`` (id chosen, nothing asked of the card yet) → ``signed`` (the card
signed it; it may or may not have reached the backend) → ``sent`` (the backend answered ok) or
``refused``; offline: ``offline`` (served within the ceiling, waiting for sync) → ``synced`` or
``conflict``. ``abandoned`` means the card left before signing: nothing can be debited. ``in_doubt``:
the card signed, the backend's answer was lost and then nothing was handed over (the offline ceiling
refused, or the card left) — the backend may have debited, so ``sync`` sends reversal advice for it
(``undone``: credited back or voided; ``conflict`` if the backend cannot undo it, e.g. its period
closed). After a crash (``recover``, when an agent starts on the outbox) a ``created`` row is
``abandoned`` and a ``signed`` row is ``in_doubt``: the clerk never saw its receipt, so nothing was
handed over, whatever the backend did with it. Each change is its own committed transaction
(synchronous=FULL). Because opening recovers, one process at a time may hold an outbox file
(outbox_lock.py): a second one is refused with ``OutboxBusy`` before anything is read or changed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reader_agent.outbox_lock import OutboxBusy, OutboxLock

__all__ = ["STATES", "Entry", "Outbox", "OutboxBusy"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    card_serial TEXT NOT NULL,
    product_code TEXT NOT NULL,
    quantity_qty INTEGER NOT NULL,
    point_code TEXT NOT NULL,
    counter INTEGER,
    signature BLOB,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outbox_state ON outbox (state);
CREATE TABLE IF NOT EXISTS card_counters (serial TEXT PRIMARY KEY, last_counter INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

STATES = ("created", "signed", "sent", "refused", "offline", "synced", "conflict", "abandoned", "in_doubt",
          "undone")


@dataclass(frozen=True)
class Entry:
    id: str
    card_serial: str
    product_code: str
    quantity_qty: int
    point_code: str
    counter: int | None
    signature: bytes | None
    mode: str
    state: str
    result: str | None
    created_at: dt.datetime


COLUMNS = ", ".join(
    [
        *("id", "card_serial", "product_code", "quantity_qty", "point_code", "counter", "signature"),
        *("mode", "state", "result", "created_at"),
    ]
)


def _entry(row: tuple[object, ...]) -> Entry:
    values = list(row)
    values[10] = dt.datetime.fromisoformat(str(values[10]))
    return Entry(*values)  # type: ignore[arg-type]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Outbox:
    def __init__(self, path: Path) -> None:
        """Open (and lock, for this process's life) the outbox; ``OutboxBusy`` if another holds it."""
        self._file_lock: OutboxLock | None = None
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file_lock = OutboxLock(path).acquire()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._lock = threading.Lock()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except BaseException:
            if self._file_lock is not None:
                self._file_lock.release()
            raise

    def close(self) -> None:
        self._db.close()
        if self._file_lock is not None:
            self._file_lock.release()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One committed write transaction (BEGIN IMMEDIATE), rolled back if anything in it fails."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _write(self, sql: str, params: tuple[object, ...]) -> None:
        with self._transaction() as db:
            db.execute(sql, params)

    def create(self, rid: str, serial: str, product: str, quantity_qty: int, point: str, mode: str) -> None:
        now = _now()
        self._write(
            "INSERT INTO outbox (id, card_serial, product_code, quantity_qty, point_code, mode, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?)",
            (rid, serial, product, quantity_qty, point, mode, now, now),
        )

    def signed(self, rid: str, counter: int, signature: bytes) -> None:
        self._write(
            "UPDATE outbox SET counter = ?, signature = ?, state = 'signed', updated_at = ? WHERE id = ?",
            (counter, signature, _now(), rid),
        )

    def mark(self, rid: str, state: str, result: str | None = None, *, mode: str | None = None) -> None:
        if state not in STATES:
            raise ValueError(f"unknown outbox state {state!r}")
        self._write(
            "UPDATE outbox SET state = ?, result = COALESCE(?, result), mode = COALESCE(?, mode),"
            " updated_at = ? WHERE id = ?",
            (state, result, mode, _now(), rid),
        )

    def entries(self, *states: str, limit: int = 500) -> list[Entry]:
        marks = ",".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE state IN ({marks}) ORDER BY created_at LIMIT ?",
                (*states, limit),
            ).fetchall()
        return [_entry(row) for row in rows]

    def get(self, rid: str) -> Entry | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM outbox WHERE id = ?",
                (rid,),
            ).fetchone()
        return None if row is None else _entry(row)

    def recover(self) -> dict[str, int]:
        """After a crash: redemptions never signed are abandoned, signed ones without an answer are in
        doubt (their receipt was never shown). Returns how many of each."""
        now = _now()
        with self._transaction() as db:
            abandoned = db.execute(
                "UPDATE outbox SET state = 'abandoned', result = 'card_removed', updated_at = ? "
                "WHERE state = 'created'", (now,)).rowcount
            in_doubt = db.execute(
                "UPDATE outbox SET state = 'in_doubt', result = COALESCE(result, 'answer_lost'), "
                "updated_at = ? WHERE state = 'signed'", (now,)).rowcount
        return {"abandoned": abandoned, "in_doubt": in_doubt}

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    def depth(self) -> int:
        """Redemptions still owed to the backend (served offline, signed and not yet answered, or in
        doubt and not yet undone).

        The number a supervisor watches during an outage: it grows while the point serves offline
        and must come back to 0 once the backend is reachable and the agent has synced."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state IN ('offline', 'signed', 'in_doubt')"
            ).fetchone()
        return int(row[0]) if row else 0

    # -- what an offline agent must remember -------------------------------------------------

    def last_counter(self, serial: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT last_counter FROM card_counters WHERE serial = ?", (serial,)
            ).fetchone()
        return int(row[0]) if row else 0

    def see_counter(self, serial: str, counter: int) -> None:
        self._write(
            "INSERT INTO card_counters (serial, last_counter) VALUES (?, ?) ON CONFLICT (serial)"
            " DO UPDATE SET last_counter = MAX(last_counter, excluded.last_counter)",
            (serial, counter),
        )

    def setting(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        self._write(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
