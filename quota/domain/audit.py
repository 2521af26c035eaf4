"""Allowances checked against the journal and the holds (invariants 1 and 2), for auditors.

The sealed journal shows any edit of itself (``quota.domain.chain``); an allowance row is derived
state, kept beside it for the hot path. So an edit of a row by SQL — a family's ``used`` set back to
let it draw again, a ``held`` that no pump hold explains, ``granted`` cut below what was drawn, the row
re-keyed or deleted so its debits point nowhere, its ``period_start`` moved past its debits — is found
by recomputing what the journal and the pending holds say the row must hold:

- ``used_mismatch``: ``used`` differs from the sum of the ``ok`` redemptions, hold posts and
  reversals journalled against the row — all of them for a calendar row (it has one period), those of
  its current window for a rolling row (top-ups move ``granted``, not ``used``);
- ``held_mismatch``: ``held`` differs from the sum of the row's pending holds;
- ``overdrawn``: ``used`` or ``held`` below zero, or ``used + held`` above ``granted``;
- ``allowance_missing``: ``ok`` debits (or pending holds) that do not sum to zero are journalled
  against an allowance id no row has: the row was re-keyed or deleted (on PostgreSQL the grant then
  makes a fresh row, and the family draws its period again). Nothing the ledger does deletes a row
  with journal entries (a rolling refresh drops only renewals that never served);
- ``window_moved``: debits are journalled against the row before its ``period_start`` and the journal
  does not explain that start: a calendar row's period never moves, and a rolling row's window starts
  only at a fill or hold that opens it (``decide.current_window``) or at a top-up or change of station
  that closes an ended one (``decide.close_ended_window``), each journalled at that very time. The
  journal's own window start is given; a rolling row's ``used`` is then checked from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from quota.domain.terms import PeriodKind, Terms


class AllowanceFigures(NamedTuple):
    """One allowance row beside what the journal and the holds say it must hold. For debits whose row
    is missing (``row_exists`` False) the row's figures are zero and ``period_start`` is the first
    debit's time; ``journal_window_start`` is set where the journal does not explain ``period_start``."""

    allowance_id: int
    holder_type: str
    holder_id: int
    product_code: str
    period_start: datetime
    granted_qty: int
    used_qty: int
    held_qty: int
    journal_used_qty: int
    pending_held_qty: int
    journal_window_start: datetime | None = None
    row_exists: bool = True


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str  # used_mismatch, held_mismatch, overdrawn, allowance_missing or window_moved
    figures: AllowanceFigures
    detail: str


def one_period(terms: Terms) -> bool:
    """Whether an allowance row under ``terms`` has one period (calendar, seasonal): every debit of it
    counts. A rolling row restarts its window in place, and counts from the window's start."""
    return terms.period_kind is not PeriodKind.ROLLING


def discrepancies(f: AllowanceFigures) -> list[Discrepancy]:
    """What is wrong with one row (nothing for a row that agrees with the journal and the holds)."""
    if not f.row_exists:
        held = f", pending holds {f.pending_held_qty}" if f.pending_held_qty else ""
        return [Discrepancy("allowance_missing", f, f"no allowance row, journal {f.journal_used_qty}{held}")]
    found: list[Discrepancy] = []
    if f.journal_window_start is not None:
        found.append(Discrepancy("window_moved", f, f"period_start {f.period_start.isoformat()}, journal "
                                                    f"window from {f.journal_window_start.isoformat()}"))
    if f.used_qty != f.journal_used_qty:
        found.append(Discrepancy("used_mismatch", f, f"used {f.used_qty}, journal {f.journal_used_qty}"))
    if f.held_qty != f.pending_held_qty:
        found.append(Discrepancy("held_mismatch", f,
                                 f"held {f.held_qty}, pending holds {f.pending_held_qty}"))
    if f.used_qty < 0 or f.held_qty < 0 or f.used_qty + f.held_qty > f.granted_qty:
        found.append(Discrepancy("overdrawn", f, f"used {f.used_qty} + held {f.held_qty} against granted "
                                              f"{f.granted_qty}"))
    return found


@dataclass(slots=True)
class AllowanceAudit:
    allowances_checked: int = 0
    findings: list[Discrepancy] = field(default_factory=list)
    truncated: bool = False  # more rows disagreed than the report lists

    @property
    def ok(self) -> bool:
        return not self.findings
