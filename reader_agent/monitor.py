"""Every reader and card event of the machine, as one queue the agent consumes.

pyscard's CardMonitor and ReaderMonitor call observers from their own threads;
turning those calls into immutable events on a bounded queue keeps the agent's
service loop single-threaded and lets tests wait for "card inserted in reader
X" without sleeping.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reader_agent import reader

MAX_QUEUED_EVENTS = 1000


@dataclass(frozen=True)
class CardEvent:
    kind: Literal["inserted", "removed"]
    reader: str
    atr: bytes


@dataclass(frozen=True)
class ReaderEvent:
    kind: Literal["added", "removed"]
    reader: str


Event = CardEvent | ReaderEvent


class ReaderWatcher:
    """Subscribe to pyscard's monitors while in use (`with ReaderWatcher() as w:`)."""

    def __init__(self, maxsize: int = MAX_QUEUED_EVENTS) -> None:
        self.events: queue.Queue[Event] = queue.Queue(maxsize=maxsize)
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> ReaderWatcher:
        self._unsubscribe.append(reader.watch_readers(self._on_readers))
        self._unsubscribe.append(reader.watch_cards(self._on_cards))
        return self

    def stop(self) -> None:
        while self._unsubscribe:
            self._unsubscribe.pop()()

    def __enter__(self) -> ReaderWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _put(self, event: Event) -> None:
        try:
            self.events.put_nowait(event)
        except queue.Full:
            # Drop the oldest: the latest state of a reader matters, a stale one does not.
            with contextlib.suppress(queue.Empty):
                self.events.get_nowait()
            self.events.put_nowait(event)

    def _on_cards(self, added: list[tuple[str, bytes]], removed: list[tuple[str, bytes]]) -> None:
        for name, atr in removed:
            self._put(CardEvent("removed", name, atr))
        for name, atr in added:
            self._put(CardEvent("inserted", name, atr))

    def _on_readers(self, added: list[str], removed: list[str]) -> None:
        for name in removed:
            self._put(ReaderEvent("removed", name))
        for name in added:
            self._put(ReaderEvent("added", name))

    def next_event(self, timeout_s: float) -> Event | None:
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def wait_for(self, wanted: Callable[[Event], bool], timeout_s: float) -> Event | None:
        """The first event satisfying `wanted` within the time bound (others are consumed)."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            event = self.next_event(left)
            if event is not None and wanted(event):
                return event
        return None
