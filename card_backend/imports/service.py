"""Import families from CSV (format: ``card_backend.imports.csvformat``), streaming and all-or-nothing.

A file with any error imports nothing and answers a report naming line, field and reason (the first
``MAX_REPORTED`` errors, and how many there were). With ``skip_invalid`` the families with an error are
left out — whole, never short of a member — and the rest is imported. Memory stays flat: rows are parsed
one family at a time and sent to staging tables in chunks; duplicates are found in SQL, not in a Python set.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import BinaryIO

from sqlalchemy.orm import Session

from card_backend.config import Settings
from card_backend.errors import ImportRejected
from card_backend.imports.csvformat import FamilyParser, FamilyTuple, PersonTuple, RowError
from card_backend.imports.schemas import ImportError_, ImportReport
from card_backend.imports.staging import Staging

MAX_REPORTED = 1000
CHUNK_PERSONS = 20_000
# progress(phase, done, total): phase "read" counts bytes of the file; "check" and "insert" have no total.
Progress = Callable[[str, int, int | None], None]


class _CountingReader(io.RawIOBase):
    """Counts the bytes read, for a progress bar over a stream whose text position cannot be asked."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


class _Loader:
    """Sends chunks to staging from a second thread on PostgreSQL, so parsing (Python, holding the GIL)
    and COPY (network and server work, GIL released) overlap; at most ``depth`` chunks wait (bounded)."""

    def __init__(self, staging: Staging, depth: int = 4) -> None:
        self.staging = staging
        self.failure: BaseException | None = None
        self.threaded = staging.pg
        self.queue: queue.Queue[tuple[list[FamilyTuple], list[PersonTuple]] | None] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name="import-copy", daemon=True)
        if self.threaded:
            self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.failure is None:
                try:
                    self.staging.load(*item)
                except BaseException as exc:  # re-raised in the caller's thread by close()
                    self.failure = exc

    def put(self, families: list[FamilyTuple], persons: list[PersonTuple]) -> None:
        if not self.threaded:
            self.staging.load(families, persons)
            return
        if self.failure is not None:
            raise self.failure
        self.queue.put((families, persons))

    def close(self) -> None:
        if self.threaded:
            self.queue.put(None)
            self.thread.join()
        if self.failure is not None:
            raise self.failure


class _Errors:
    def __init__(self) -> None:
        self.count = 0
        self.shown: list[RowError] = []

    def __call__(self, error: RowError) -> None:
        self.count += 1
        if len(self.shown) < MAX_REPORTED:
            self.shown.append(error)


def import_families(
    session: Session,
    settings: Settings,
    stream: BinaryIO,
    *,
    actor: str,
    source: str,
    skip_invalid: bool = False,
    total_bytes: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Stage, check and insert in the session's transaction; raises ``ImportRejected`` (with the report
    as detail) when the file has errors and ``skip_invalid`` is false, so the caller's rollback leaves the
    registry unchanged."""
    started = time.perf_counter()
    notify = progress or (lambda _phase, _done, _total: None)
    errors = _Errors()
    staging = Staging(session.connection())
    staging.create()
    counter = _CountingReader(stream)
    text_stream = io.TextIOWrapper(io.BufferedReader(counter, 1 << 20), encoding="utf-8-sig", newline="")
    parser = FamilyParser(settings.governorates, errors, date.today())
    families: list[FamilyTuple] = []
    persons: list[PersonTuple] = []
    loader = _Loader(staging)
    try:
        for group in parser.families(text_stream):
            families.append(group.family)
            persons.extend(group.persons)
            if len(persons) >= CHUNK_PERSONS:
                loader.put(families, persons)
                families, persons = [], []
                notify("read", counter.count, total_bytes)
        if persons:
            loader.put(families, persons)
    except UnicodeDecodeError as exc:
        errors(RowError(parser.persons_read + 1, "encoding", f"not UTF-8 text: {exc.reason}"))
    finally:
        text_stream.detach()
        loader.close()
    notify("read", counter.count, total_bytes)
    notify("check", 0, None)
    sql_errors = staging.check()
    shown = errors.shown + staging.bad_rows(max(0, MAX_REPORTED - len(errors.shown)))
    report = ImportReport(
        source=source,
        imported=False,
        skip_invalid=skip_invalid,
        families_read=parser.families_read,
        persons_read=parser.persons_read,
        error_count=errors.count + sql_errors,
        errors_shown=len(shown),
        errors=[ImportError_(line=e.line, field=e.field, reason=e.reason) for e in sorted(shown, key=_key)],
    )
    fatal = any(e.field in ("header", "encoding") for e in errors.shown)  # the rest of the file is unread
    if report.error_count and (not skip_invalid or fatal):
        report.seconds = round(time.perf_counter() - started, 3)
        raise ImportRejected(report.model_dump())
    notify("insert", 0, None)
    report.families_imported, report.persons_imported = staging.insert(actor, source)
    report.families_skipped = parser.families_invalid + (staging.bad_families() if sql_errors else 0)
    report.imported = True
    if not staging.pg:
        staging.drop()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _key(e: RowError) -> tuple[int, str]:
    return (e.line, e.field)
