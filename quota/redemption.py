"""Resolve a group of redemptions inside one transaction, in a fixed order.

The group commit engine hands a list of requests to ``resolve_group`` inside its transaction. The
group reads cards and points once, locks every allowance it touches (in id order) and the tracked
stock rows (in key order), decides each request in submission order against the working copy of the
rows — so a holder repeated in a group sees its own earlier debits, exactly as in a serial execution
— and then writes one UPDATE for all changed allowances, one INSERT for all journal rows and one
stock update for the group (``quota.group_repository``). Refusals are journalled too (quantity 0)
so a retry replays them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import Connection

from quota import group_repository as group_repo
from quota import ledger_repository as repo
from quota.domain.decide import (
    AllowanceState,
    Result,
    decide_redeem,
    first_station,
    is_current,
    not_before,
)
from quota.domain.terms import Terms

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def payload_hash(kind: str, **fields: object) -> str:
    """What "the same payload" means for idempotency: the kind and the request's own fields."""
    body = "\x1f".join([kind, *(f"{name}={fields[name]}" for name in sorted(fields))])
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Redemption:
    """One debit request; ``entry_id`` is made by the client and is its idempotency key."""

    entry_id: str
    card_serial: str
    product_code: str
    quantity_qty: int
    point_code: str
    now: datetime | None = None

    @property
    def payload_hash(self) -> str:
        # ``payload_hash("redeem", card=…, point=…, product=…, qty=…)`` written out (fields in sorted
        # order): the same digest, without the generic form's sorting (a group hashes every item).
        body = (f"redeem\x1fcard={self.card_serial}\x1fpoint={self.point_code}"
                f"\x1fproduct={self.product_code}\x1fqty={self.quantity_qty}")
        return hashlib.sha256(body.encode()).hexdigest()


class Outcome(NamedTuple):
    """The answer given after commit; ``replayed`` marks a retry answered from the journal."""

    entry_id: str
    result: str
    quantity_qty: int = 0
    remaining_qty: int | None = None
    price_minor: int = 0
    possible_at: datetime | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.result == Result.OK


class TermsSource(Protocol):
    def __call__(self, conn: Connection, rule_version_id: int) -> Terms: ...


class RuleTerms:
    """Terms of a rule version, parsed once per process (a version never changes)."""

    def __init__(self) -> None:
        self._cache: dict[int, Terms] = {}
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, rule_version_id: int) -> Terms:
        terms = self._cache.get(rule_version_id)
        if terms is not None:
            return terms
        from quota.domain.rules import rule_from_body  # the rule language; parsed off the hot path, once

        found = repo.rule_version_body(conn, rule_version_id)
        if found is None:
            raise LookupError(f"rule version {rule_version_id} does not exist")
        body, price_per_qty = found
        terms = rule_from_body(body).terms(rule_version_id, price_per_qty)  # a stored version, as stored
        with self._lock:
            self._cache[rule_version_id] = terms
        return terms


class StaticTerms:
    """Terms given up front (tests, benchmarks, a single point with fixed rules)."""

    def __init__(self, terms: Sequence[Terms]) -> None:
        self._by_id = {t.rule_version_id: t for t in terms}

    def __call__(self, conn: Connection, rule_version_id: int) -> Terms:
        return self._by_id[rule_version_id]


def outcome_of(row: dict[str, Any], *, replayed: bool) -> Outcome:
    """The answer a journal row stands for (a too_soon refusal keeps its time in ``reason``)."""
    reason = row.get("reason") or ""
    possible_at = datetime.fromisoformat(reason[12:]) if reason.startswith("possible_at=") else None
    remaining = row["remaining_qty"]
    return Outcome(row["entry_id"], str(row["result"]), int(row["quantity_qty"]),
                   None if remaining is None else int(remaining), int(row["price_minor"]), possible_at,
                   replayed)


def replay(stored: dict[str, Any], request_hash: str, entry_id: str) -> Outcome:
    """The first answer to an id, or a refusal when the same id carries another payload."""
    if stored["payload_hash"] != request_hash:
        return Outcome(entry_id, Result.EXISTS_WITH_DIFFERENT_PAYLOAD)
    return outcome_of(stored, replayed=True)


def candidate_keys(card: repo.CardRow, product_code: str) -> list[repo.HolderKey]:
    """The card's own allowance first; a member's card also reaches the family allowance."""
    keys = [(card.holder_type, card.holder_id, product_code)]
    if card.holder_type == "person" and card.family_id is not None:
        keys.append(("family", card.family_id, product_code))
    return keys


def resolve_group(
    conn: Connection, items: Sequence[Redemption], terms_for: TermsSource, clock: Callable[[], datetime]
) -> list[Outcome | Exception]:
    """Decide and write a group; the caller's transaction commits it.

    A request that cannot be decided (a bug, or terms that cannot be built) is answered with its
    exception and written nowhere: the rest of the group — other callers' requests — is decided and
    committed as if it had not been sent. A database error still fails the whole group (it is retried)."""
    group_now = clock()
    nows = [item.now or group_now for item in items]
    cards, points = group_repo.read(conn, [i.card_serial for i in items], [i.point_code for i in items])
    keys: list[repo.HolderKey] = []
    for item in items:
        card = cards.get(item.card_serial)
        if card is not None and card.state == "active":
            keys.extend(candidate_keys(card, item.product_code))
    lock_now = max(nows)
    states, existing, stock = group_repo.lock(
        conn, keys, lock_now, [i.entry_id for i in items], [(i.point_code, i.product_code) for i in items]
    )
    # A row is locked only if it began by ``lock_now``, unless another writer whose clock was read later
    # restarted its rolling window while this group waited for the lock: the group's movements land in
    # that window, so they are dated no earlier than it (not ``not_eligible`` for a window "not yet
    # begun", nor journalled before the window they count in).
    began = not_before(lock_now, *states.values())
    if began > lock_now:
        nows = [max(now, began) for now in nows]
        lock_now = began
    dispensed: dict[tuple[str, str], int] = defaultdict(int)
    changed: dict[int, AllowanceState] = {}
    rows: list[dict[str, Any]] = []
    outcomes: list[Outcome | Exception] = []
    bound: list[tuple[repo.HolderKey, str]] = []
    for item, now in zip(items, nows, strict=True):
        request_hash = item.payload_hash
        stored = existing.get(item.entry_id)
        if stored is not None:
            outcomes.append(replay(stored, request_hash, item.entry_id))
            continue
        row: dict[str, Any] = {
            "entry_id": item.entry_id, "kind": "redeem", "allowance_id": None, "holder_type": None,
            "holder_id": None, "product_code": item.product_code, "point_code": item.point_code,
            "card_serial": item.card_serial, "quantity_qty": 0, "price_minor": 0, "remaining_qty": None,
            "payload_hash": request_hash, "ref_entry_id": None, "actor": None, "reason": None,
            "created_at": now,
        }
        try:
            outcome = _decide_one(item, now, cards, points, states, stock, dispensed, terms_for, conn, row,
                                  bound)
        except repo.DATABASE_ERRORS:
            raise
        except Exception as exc:  # nothing of it was applied: _decide_one changes the rows only on ok
            log.exception("redemption %s could not be decided; the rest of its group goes on", item.entry_id)
            outcomes.append(exc)
            continue
        if outcome.ok:
            key = (row["holder_type"], row["holder_id"], item.product_code)
            changed[states[key].id] = states[key]
        existing[item.entry_id] = row
        rows.append(row)
        outcomes.append(outcome)
    group_repo.write(conn, list(changed.values()), rows, dispensed, bound, lock_now)
    return outcomes


def _decide_one(
    item: Redemption,
    now: datetime,
    cards: dict[str, repo.CardRow],
    points: dict[str, frozenset[str]],
    states: dict[repo.HolderKey, AllowanceState],
    stock: dict[tuple[str, str], int],
    dispensed: dict[tuple[str, str], int],
    terms_for: TermsSource,
    conn: Connection,
    row: dict[str, Any],
    bound: list[tuple[repo.HolderKey, str]],
) -> Outcome:
    """Decide one request against the group's working rows; fills its journal ``row`` (and ``bound``
    with a card's first station)."""
    card = cards.get(item.card_serial)
    result: str
    possible_at: datetime | None = None
    if card is None:
        result = Result.CARD_UNKNOWN
    elif card.state != "active":
        result = Result.CARD_BLOCKED
        row["holder_type"], row["holder_id"] = card.holder_type, card.holder_id
    elif item.product_code not in points.get(item.point_code, frozenset()):
        result = Result.PRODUCT_NOT_SERVED
        row["holder_type"], row["holder_id"] = card.holder_type, card.holder_id
    else:
        row["holder_type"], row["holder_id"] = card.holder_type, card.holder_id
        state, terms = None, None
        for key in candidate_keys(card, item.product_code):
            found = states.get(key)
            if found is not None:
                found_terms = terms_for(conn, found.rule_version_id)
                if is_current(found, found_terms, now):
                    state, terms = found, found_terms
                    break
        if state is None or terms is None:
            result = Result.NOT_ELIGIBLE
        else:
            row["allowance_id"] = state.id
            row["holder_type"], row["holder_id"] = state.holder_type, state.holder_id
            decision = decide_redeem(state, terms, item.quantity_qty, item.point_code, now)
            pair = (item.point_code, item.product_code)
            result = decision.result
            if decision.ok and pair in stock and stock[pair] - dispensed[pair] < item.quantity_qty:
                result = Result.POINT_OUT_OF_STOCK
            row["remaining_qty"] = state.remaining_qty
            if result == Result.OK:
                key = (state.holder_type, state.holder_id, item.product_code)
                states[key] = decision.state
                station = first_station(state, decision.state)
                if station is not None:
                    bound.append((key, station))
                dispensed[pair] += item.quantity_qty
                row["quantity_qty"] = decision.debit_qty
                row["price_minor"] = decision.price_minor
                row["remaining_qty"] = decision.remaining_qty
            elif decision.possible_at is not None:
                possible_at = decision.possible_at
                row["reason"] = f"possible_at={possible_at.isoformat()}"
    row["result"] = result = str(result)
    # The answer ``outcome_of(row)`` would read back, built from what is at hand.
    return Outcome(item.entry_id, result, row["quantity_qty"], row["remaining_qty"], row["price_minor"],
                   possible_at)
