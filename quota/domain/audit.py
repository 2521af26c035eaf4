"""Allowances checked against the journal and the holds (invariants 1 and 2), for auditors.

The sealed journal shows any edit of itself (``quota.domain.chain``); an allowance row is derived
state, kept beside it for the hot path. So an edit of a row by SQL — a family's ``used`` set back to
let it draw again, a ``held`` that no pump hold explains, ``granted`` cut below what was drawn — is
found by recomputing what the journal and the pending holds say the row must hold:

- ``used_mismatch``: ``used`` differs from the sum of the ``ok`` redemptions, hold posts and
  reversals journalled against the row in its current window (a rolling row counts from its window
  start; top-ups move ``granted``, not ``used``);
- ``held_mismatch``: ``held`` differs from the sum of the row's pending holds;
- ``overdrawn``: ``used`` or ``held`` below zero, or ``used + held`` above ``granted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class AllowanceFigures(NamedTuple):
    """One allowance row beside what the journal and the holds say it must hold."""

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


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: str  # used_mismatch, held_mismatch or overdrawn
    figures: AllowanceFigures
    detail: str


def discrepancies(f: AllowanceFigures) -> list[Discrepancy]:
    """What is wrong with one row (nothing for a row that agrees with the journal and the holds)."""
    found: list[Discrepancy] = []
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
