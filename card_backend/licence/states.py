"""A licence's state on a date, from its append-only state history (pure: no framework, no SQL).

Each history entry holds from its ``effective_on`` until the next entry. On top of the history:
before ``issued_on`` there is no licence (``not_issued``); after ``expires_on`` a licence that was not
revoked is ``expired`` (on the expiry day itself it still holds). Revocation is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

STATES = ("valid", "suspended", "revoked")
FINAL = frozenset({"revoked"})


@dataclass(frozen=True, slots=True)
class Entry:
    effective_on: date
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StateOn:
    state: str  # valid | suspended | revoked | expired | not_issued
    reason: str
    since: date | None


def state_on(issued_on: date, expires_on: date, history: Sequence[Entry], on: date) -> StateOn:
    """History must be in recording order; entries with the same date: the later recorded wins."""
    if on < issued_on:
        return StateOn("not_issued", "", None)
    current: Entry | None = None
    for entry in sorted(history, key=lambda e: e.effective_on):  # stable: recording order kept per day
        if entry.effective_on <= on:
            current = entry
    if current is not None and current.state in FINAL:
        return StateOn(current.state, current.reason, current.effective_on)
    if on > expires_on:
        return StateOn("expired", "past the expiry date", expires_on + timedelta(days=1))
    if current is None:
        return StateOn("valid", "", issued_on)
    return StateOn(current.state, current.reason, current.effective_on)


def transition_problem(history: Sequence[Entry], issued_on: date, new: Entry) -> str | None:
    """Why ``new`` cannot be appended, or ``None``: revocation is final and history is never back-dated."""
    if new.state not in STATES:
        return f"state must be one of {', '.join(STATES)}"
    if new.effective_on < issued_on:
        return "effective before the licence was issued"
    if history:
        last = max(history, key=lambda e: e.effective_on)
        if last.state in FINAL:
            return f"the licence was {last.state} on {last.effective_on.isoformat()}"
        if new.effective_on < last.effective_on:
            return f"effective before the last recorded change ({last.effective_on.isoformat()})"
    return None
