"""Background jobs of one deployment: open periods as they begin, expire holds, send messages, seal
the journal, drop stored grants past their retention (daily), and audit the ledger (daily: the sealed
journal verified, every allowance row reconciled with it; anything found is logged as an error).

Each job runs every ``interval_s`` (bounded by the settings), in one thread, one after another: the
jobs are short and each is safe to run from several processes (hold expiry and sealing take their
locks; messages are claimed per round), so a second worker is redundancy, not a hazard. A failing job
is logged and retried at its next turn; it never ends the loop. ``stop`` (SIGTERM, Ctrl-C) is honoured
between jobs, within one interval at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from quota.notify import Notifier
from quota.service import LedgerService

log = logging.getLogger(__name__)
MAX_SLEEP_S = 60.0


@dataclass(slots=True)
class Round:
    """What one round of every job did."""

    holds_expired: int = 0
    messages_queued: int = 0
    messages_sent: int = 0
    messages_failed: int = 0
    seals_made: int = 0
    allowances_opened: int = 0
    grant_blocks_pruned: int = 0
    audit_findings: int = 0


@dataclass(slots=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[Round], None]
    due_at: float = 0.0


class Worker:
    def __init__(self, ledger: LedgerService, notifier: Notifier, *, holds_interval_s: float = 5.0,
                 messages_interval_s: float = 2.0, seal_interval_s: float = 60.0,
                 open_periods: Callable[[], int] | None = None, periods_interval_s: float = 300.0,
                 prune_grants: Callable[[], int] | None = None, prune_interval_s: float = 86_400.0,
                 audit_interval_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ledger = ledger
        self.notifier = notifier
        self.monotonic = monotonic
        self.open_periods = open_periods
        self.prune_grants = prune_grants
        self.jobs = [
            *([Job("periods", periods_interval_s, self._open)] if open_periods is not None else []),
            Job("holds", holds_interval_s, self._expire),
            Job("messages", messages_interval_s, self._messages),
            Job("seal", seal_interval_s, self._seal),
            *([Job("grants", prune_interval_s, self._prune)] if prune_grants is not None else []),
            *([Job("audit", audit_interval_s, self._audit)] if audit_interval_s > 0 else []),
        ]

    def _open(self, done: Round) -> None:
        assert self.open_periods is not None
        done.allowances_opened += self.open_periods()

    def _prune(self, done: Round) -> None:
        assert self.prune_grants is not None
        done.grant_blocks_pruned += self.prune_grants()

    def _expire(self, done: Round) -> None:
        done.holds_expired += self.ledger.expire_holds()

    def _messages(self, done: Round) -> None:
        queued, sent, failed = self.notifier.run_once()
        done.messages_queued += queued
        done.messages_sent += sent
        done.messages_failed += failed

    def _seal(self, done: Round) -> None:
        done.seals_made += len(self.ledger.seal())

    def _audit(self, done: Round, shown: int = 20) -> None:
        """Verify the sealed journal and reconcile every allowance with it; a finding is an alarm (an edit
        by SQL, or a bug), logged as an error for whoever watches the logs."""
        journal = self.ledger.verify()
        rows = self.ledger.reconcile(limit=shown)
        done.audit_findings += len(journal.findings) + len(rows.findings)
        if journal.ok and rows.ok:
            log.info("ledger audit ok: %d entries, %d allowances", journal.entries_checked,
                     rows.allowances_checked)
            return
        log.error("ledger audit FAILED: %d journal findings, %d allowance rows disagree%s",
                  len(journal.findings), len(rows.findings), " (more not listed)" if rows.truncated else "")
        for f in journal.findings[:shown]:
            log.error("journal %s seq=%s entry=%s seal=%s %s", f.kind, f.seq, f.entry_id, f.seal_id, f.detail)
        for d in rows.findings:
            a = d.figures
            log.error("allowance %s id=%s holder=%s:%s product=%s %s", d.kind, a.allowance_id, a.holder_type,
                      a.holder_id, a.product_code, d.detail)

    def _run(self, job: Job, done: Round) -> None:
        try:
            job.run(done)
        except Exception:  # a database or gateway hiccup must not end the worker; the next turn retries
            log.exception("job %s failed", job.name)

    def run_once(self) -> Round:
        """Every job once, in order (periods first, so a day's bread is open before anyone taps; expiry
        before sealing, so a released hold's credit is not left unsealed)."""
        done = Round()
        for job in self.jobs:
            self._run(job, done)
        return done

    def run(self, stop: threading.Event) -> None:
        """Run each job when due until ``stop`` is set."""
        while not stop.is_set():
            now = self.monotonic()
            for job in self.jobs:
                if stop.is_set():
                    return
                if job.due_at <= now:
                    done = Round()
                    self._run(job, done)
                    log.debug("job %s: %s", job.name, done)
                    job.due_at = self.monotonic() + job.interval_s
            next_due = min(job.due_at for job in self.jobs)
            stop.wait(min(max(next_due - self.monotonic(), 0.0), MAX_SLEEP_S))
