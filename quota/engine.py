"""Group commit: many concurrent redemptions, one transaction (and one fsync) per group.

Callers submit to a bounded queue and wait on a future. Writer threads each drain up to
``max_items`` requests (waiting at most ``max_wait_ms`` for a group to fill), resolve them in one
transaction (``quota.redemption.resolve_group``), commit, and only then resolve the futures — no
answer is given before its debit is durable (invariant 4).

Why threads and not an asyncio task: the writer spends its time in the database driver, which releases
the GIL, so threads let several writers overlap their round trips on one process while the FastAPI
event loop stays free; the same engine serves synchronous callers (CLI, tests, the benchmark) and async
endpoints (``await engine.redeem_async(...)`` wraps the future). On PostgreSQL several writers run,
their groups locking allowance rows in id order so they never deadlock; on SQLite one writer runs.

On PostgreSQL a group costs three pipelined round trips plus the commit (``quota.group_repository``).

Bounds: the queue holds at most ``queue_limit`` submissions — a request, or a batch of at most 1,000
(the HTTP batch limit) — (``EngineBusy`` beyond, so an overloaded server answers 503 instead of
growing memory); a group takes submissions until it holds ``max_items`` (a batch is never split);
a group that fails on a transient database error is retried at most ``max_attempts`` times, then its
callers get the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from quota import ledger_repository as repo
from quota.redemption import Outcome, Redemption, TermsSource, resolve_group, utcnow

log = logging.getLogger(__name__)


class EngineBusy(Exception):
    """The queue is full: the caller should retry later (HTTP 503)."""


class EngineStopped(Exception):
    """The engine is not running."""


@dataclass(slots=True)
class _Pending:
    """One submission: a single request (its future gets an ``Outcome``) or a caller's batch (one
    future for the list: a batch of 32 costs one queue entry and one wake-up, not 32)."""

    requests: Sequence[Redemption]
    future: Future[Any]
    single: bool

    def answer(self, outcomes: list[Outcome | Exception]) -> None:
        """The caller's answers; a request that could not be decided fails its own submission only (a
        batch with it fails as a whole; its other requests were applied, and a retry of the batch with
        the same ids replays them)."""
        failed = next((o for o in outcomes if isinstance(o, Exception)), None)
        if failed is not None:
            self.future.set_exception(failed)
            return
        self.future.set_result(outcomes[0] if self.single else outcomes)


@dataclass(frozen=True, slots=True)
class EngineStats:
    groups: int
    items: int
    busy_s: float = 0.0

    @property
    def mean_group(self) -> float:
        return self.items / self.groups if self.groups else 0.0


class GroupCommitEngine:
    def __init__(
        self,
        db: Engine,
        terms_for: TermsSource,
        *,
        max_items: int = 512,
        max_wait_ms: float = 2.0,
        writers: int | None = None,
        queue_limit: int = 16_384,
        max_attempts: int = 5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.terms_for = terms_for
        self.max_items = max_items
        self.max_wait_s = max_wait_ms / 1000
        sqlite = db.dialect.name == "sqlite"
        self.writers = 1 if sqlite else (writers or 2)
        self.max_attempts = max_attempts
        self.clock = clock
        self.reconnect_pause_s = 0.05
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=queue_limit)
        self._threads: list[threading.Thread] = []
        self._running = False
        self._stats_lock = threading.Lock()
        self._groups = 0
        self._items = 0
        self._busy_s = 0.0

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> GroupCommitEngine:
        """Start the writers (idempotent, safe from several threads)."""
        with self._stats_lock:
            if self._running:
                return self
            self._running = True
            for n in range(self.writers):
                thread = threading.Thread(target=self._writer, name=f"ledger-writer-{n}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Finish what is queued, then stop the writers."""
        if not self._running:
            return
        self._running = False
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def __enter__(self) -> GroupCommitEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> EngineStats:
        with self._stats_lock:
            return EngineStats(self._groups, self._items, self._busy_s)

    # callers ------------------------------------------------------------------------------------
    def _put(self, pending: _Pending) -> None:
        if not self._running:
            raise EngineStopped("the redemption engine is not running")
        try:
            self._queue.put_nowait(pending)
        except queue.Full as exc:
            raise EngineBusy("too many redemptions in flight") from exc

    def submit(self, request: Redemption) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        self._put(_Pending((request,), future, True))
        return future

    def submit_many(self, requests: Sequence[Redemption]) -> Future[list[Outcome]]:
        """A batch: answered together, in order, after the commit of the group(s) holding it."""
        future: Future[list[Outcome]] = Future()
        if not requests:
            future.set_result([])
            return future
        self._put(_Pending(tuple(requests), future, False))
        return future

    def redeem(self, request: Redemption, timeout_s: float = 30.0) -> Outcome:
        return self.submit(request).result(timeout_s)

    def redeem_many(self, requests: Sequence[Redemption], timeout_s: float = 60.0) -> list[Outcome]:
        """Submit all as one batch, then wake once when all are answered."""
        return self.submit_many(requests).result(timeout_s)

    async def redeem_async(self, request: Redemption) -> Outcome:
        return await asyncio.wrap_future(self.submit(request))

    async def redeem_many_async(self, requests: Sequence[Redemption]) -> list[Outcome]:
        return await asyncio.wrap_future(self.submit_many(requests))

    # writer -------------------------------------------------------------------------------------
    def _next_group(self) -> list[_Pending] | None:
        first = self._queue.get()
        if first is None:
            return None
        group = [first]
        items = len(first.requests)
        deadline = time.monotonic() + self.max_wait_s
        while items < self.max_items:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is None:
                self._queue.put(None)  # let this writer finish the group, then stop
                break
            group.append(item)
            items += len(item.requests)
        return group

    def _writer(self) -> None:
        # A writer keeps its connection: a pool checkout (and its pre-ping round trip) per group
        # would cost as much as a statement of the group.
        conn: Connection | None = None
        try:
            while True:
                group = self._next_group()
                if group is None:
                    return
                conn = self._connection(conn, group)
                if conn is not None:
                    self._commit(conn, group)
        finally:
            if conn is not None:
                conn.close()

    def _connection(self, conn: Connection | None, group: list[_Pending]) -> Connection | None:
        """The writer's connection, reopened after a loss. While the database cannot be reached the
        group's callers get the error at once (they retry with the same ids) and the writer lives on:
        a writer that died on a failed reconnect left its process answering nothing, ever."""
        if conn is not None and not conn.invalidated and not conn.closed:
            return conn
        if conn is not None:
            with contextlib.suppress(*repo.DATABASE_ERRORS):
                conn.close()
        try:
            return self.db.connect()
        except repo.DATABASE_ERRORS as exc:
            cause = getattr(exc, "orig", exc)
            log.warning("database unreachable, group of %d refused: %s", len(group), cause)
            for pending in group:
                pending.future.set_exception(exc)
            time.sleep(self.reconnect_pause_s)
            return None

    def _commit(self, conn: Connection, group: list[_Pending]) -> None:
        requests = [r for p in group for r in p.requests]
        began = time.perf_counter()
        for attempt in range(1, self.max_attempts + 1):
            try:
                with conn.begin():
                    repo.begin_write(conn)
                    outcomes = resolve_group(conn, requests, self.terms_for, self.clock)
            except repo.DATABASE_ERRORS as exc:
                # A racing duplicate id, a serialisation failure or a lost connection: retry the group
                # from scratch (nothing of it was committed), then give up and tell every caller.
                if attempt < self.max_attempts:
                    cause = getattr(exc, "orig", exc)
                    log.warning("group of %d failed (attempt %d): %s", len(group), attempt, cause)
                    time.sleep(0.001 * attempt)
                    continue
                for pending in group:
                    pending.future.set_exception(exc)
                return
            except Exception as exc:  # a bug must not hang the callers
                log.exception("group of %d failed", len(group))
                for pending in group:
                    pending.future.set_exception(exc)
                return
            with self._stats_lock:
                self._groups += 1
                self._items += len(requests)
                self._busy_s += time.perf_counter() - began
            start = 0
            for pending in group:
                end = start + len(pending.requests)
                pending.answer(outcomes[start:end])
                start = end
            return
