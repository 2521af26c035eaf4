"""Import families from CSV (format: ``card_backend.imports.csvformat``), streaming and all-or-nothing.

A file with any error imports nothing and answers a report naming line, field and reason (the first
``MAX_REPORTED`` errors, and how many there were). With ``skip_invalid`` the families with an error are
left out — whole, never short of a member — and the rest is imported. Memory stays flat: rows are parsed
one family at a time and sent to the database in chunks; duplicates are found by the database's unique
indexes or in SQL, never in a Python set.

Two paths, one transaction: on PostgreSQL a clean file is COPY-ed straight into the registry
(``direct.py``) inside a savepoint; at the first error or unique violation the savepoint is rolled back
and the file is read again through staging tables (``staging.py``), whose set-based checks name every
offending line. SQLite, and streams that cannot be re-read, take the staged path only.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import BinaryIO

import psycopg.errors
from sqlalchemy.orm import Session

from card_backend.config import Settings
from card_backend.errors import ImportRejected
from card_backend.imports.csvformat import FamilyGroup, FamilyParser, FamilyTuple, PersonTuple, RowError
from card_backend.imports.direct import DirectLoad
from card_backend.imports.schemas import ImportReport, ImportRowError
from card_backend.imports.staging import Staging

MAX_REPORTED = 1000
CHUNK_PERSONS = 10_000
# progress(phase, done, total): "read" counts bytes; "reread" (errors found: reading again to name them),
# "check" and "insert" have no total.
Progress = Callable[[str, int, int | None], None]
Sink = Callable[[list[FamilyTuple], list[PersonTuple]], None]


class _NotClean(Exception):
    """The fast path met an error: roll it back and take the staged path."""


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
    """Sends chunks to the database from a second thread on PostgreSQL, so parsing (Python, holding the
    GIL) and COPY (network and server work, GIL released) overlap; at most ``depth`` chunks wait."""

    def __init__(self, sink: Sink, threaded: bool, depth: int = 2) -> None:
        self.sink = sink
        self.failure: BaseException | None = None
        self.threaded = threaded
        self.queue: queue.Queue[tuple[list[FamilyTuple], list[PersonTuple]] | None] = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, name="import-copy", daemon=True)
        if threaded:
            self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.failure is None:
                try:
                    self.sink(*item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self.failure = exc

    def put(self, families: list[FamilyTuple], persons: list[PersonTuple]) -> None:
        if self.failure is not None:
            raise self.failure
        if self.threaded:
            self.queue.put((families, persons))
        else:
            self.sink(families, persons)

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


class _Run:
    """One pass over the file: parse, feed ``sink`` in chunks, collect errors."""

    def __init__(self, settings: Settings, stream: BinaryIO, notify: Progress, total: int | None) -> None:
        self.errors = _Errors()
        self.parser = FamilyParser(settings.governorates, self.errors, date.today())
        self.counter = _CountingReader(stream)
        self.notify = notify
        self.total = total

    def feed(self, loader: _Loader, stop_at_error: bool) -> None:
        text_stream = io.TextIOWrapper(
            io.BufferedReader(self.counter, 1 << 20), encoding="utf-8-sig", newline=""
        )
        families: list[FamilyTuple] = []
        persons: list[PersonTuple] = []
        group: FamilyGroup
        try:
            for group in self.parser.families(text_stream):
                if stop_at_error and self.errors.count:
                    raise _NotClean
                families.append(group.family)
                persons.extend(group.persons)
                if len(persons) >= CHUNK_PERSONS:
                    loader.put(families, persons)
                    families, persons = [], []
                    self.notify("read", self.counter.count, self.total)
            if stop_at_error and self.errors.count:
                raise _NotClean
            if persons:
                loader.put(families, persons)
        except UnicodeDecodeError as exc:
            self.errors(RowError(self.parser.persons_read + 1, "encoding", f"not UTF-8 text: {exc.reason}"))
            if stop_at_error:
                raise _NotClean from exc
        finally:
            text_stream.detach()
            loader.close()
        self.notify("read", self.counter.count, self.total)

    def report(
        self, source: str, skip_invalid: bool, extra: list[RowError], extra_count: int
    ) -> ImportReport:
        shown = sorted(self.errors.shown + extra, key=lambda e: (e.line, e.field))
        return ImportReport(
            source=source,
            imported=False,
            skip_invalid=skip_invalid,
            families_read=self.parser.families_read,
            persons_read=self.parser.persons_read,
            error_count=self.errors.count + extra_count,
            errors_shown=len(shown),
            errors=[ImportRowError(line=e.line, field=e.field, reason=e.reason) for e in shown],
        )


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
    """Load in the session's transaction; raises ``ImportRejected`` (the report as detail) when the file
    has errors and ``skip_invalid`` is false, so the caller's rollback leaves the registry unchanged."""
    started = time.perf_counter()
    notify = progress or (lambda _phase, _done, _total: None)
    conn = session.connection()
    if conn.dialect.name == "postgresql" and stream.seekable():
        start = stream.tell()
        try:
            with session.begin_nested():
                run = _Run(settings, stream, notify, total_bytes)
                direct = DirectLoad(conn, actor, source)
                run.feed(_Loader(direct.load, threaded=True), stop_at_error=True)
                notify("insert", 0, None)
                report = run.report(source, skip_invalid, [], 0)
                report.families_imported, report.persons_imported = direct.finish()
                report.imported = True
                report.seconds = round(time.perf_counter() - started, 3)
                return report
        except (_NotClean, psycopg.errors.UniqueViolation):
            stream.seek(start)
            notify("reread", 0, total_bytes)
    return _staged(session, settings, stream, actor, source, skip_invalid, total_bytes, notify, started)


def _staged(
    session: Session,
    settings: Settings,
    stream: BinaryIO,
    actor: str,
    source: str,
    skip_invalid: bool,
    total_bytes: int | None,
    notify: Progress,
    started: float,
) -> ImportReport:
    staging = Staging(session.connection())
    staging.create()
    run = _Run(settings, stream, notify, total_bytes)
    run.feed(_Loader(staging.load, threaded=staging.pg), stop_at_error=False)
    notify("check", 0, None)
    sql_errors = staging.check()
    sql_shown = staging.bad_rows(max(0, MAX_REPORTED - len(run.errors.shown)))
    report = run.report(source, skip_invalid, sql_shown, sql_errors)
    fatal = any(e.field in ("header", "encoding") for e in run.errors.shown)  # the rest of the file is unread
    if report.error_count and (not skip_invalid or fatal):
        report.seconds = round(time.perf_counter() - started, 3)
        raise ImportRejected(report.model_dump())
    notify("insert", 0, None)
    report.families_imported, report.persons_imported = staging.insert(actor, source)
    report.families_skipped = run.parser.families_invalid + (staging.bad_families() if sql_errors else 0)
    report.imported = True
    if not staging.pg:
        staging.drop()
    report.seconds = round(time.perf_counter() - started, 3)
    return report
