"""Ledger use cases: redeem (through the group commit engine), holds, reversals, top-ups, stock, seals.

Each use case other than a redemption is one transaction of its own: it locks the one allowance it
moves, decides with ``quota.domain.decide`` and appends one journal row. Ids are idempotency keys: a
hold is keyed by its client-made id; its post, void and expiry by ids derived from it (uuid5), so a
retried post is applied once. Refusals are journalled and replayed like redemptions — except a refused
post that leaves its hold pending (``exceeds_hold``, ``invalid_quantity``): it is answered afresh each
time, never stored under the post's id, so the pump's true figure can still be posted. A retry that
races its original request into the unique index is run once more and replays the stored answer
(``_replays_on_conflict``).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, ParamSpec
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from quota import ledger_reports
from quota import ledger_repository as repo
from quota import seal_repository as seal_repo
from quota import stock_repository as stock_repo
from quota.domain import audit, chain
from quota.domain.decide import (
    AllowanceState,
    Decision,
    Result,
    ReversedDebit,
    check_reversal,
    decide_hold,
    decide_post,
    decide_rebind,
    decide_release,
    decide_reverse,
    decide_topup,
    decide_withdraw_topup,
    first_station,
    is_current,
    not_before,
    unserved_refund,
    window_holds,
)
from quota.domain.stock import DeliveryPayload
from quota.domain.terms import Terms
from quota.engine import GroupCommitEngine
from quota.redemption import (
    Outcome,
    Redemption,
    TermsSource,
    candidate_keys,
    outcome_of,
    payload_hash,
    replay,
    utcnow,
)

HOLD_NAMESPACE = uuid.UUID("5b0c6e0e-3f51-4f0a-9a43-6f1f3c0d9a11")
UNDELIVERED_REASON = "undelivered: the point lost the answer and handed nothing over"
# Reversal ids derived from the debit's: a repeated advice finds its own reversal.
_UNDELIVERED_IDS = uuid.UUID("5b0c6a8e-3f6f-4f43-9a51-0d8f3c1e7a21")


def derived_id(hold_id: str, step: str) -> str:
    return str(uuid.uuid5(HOLD_NAMESPACE, f"{hold_id}:{step}"))


# Corrections whose answer names what they did, replayed with the same name.
_REPLAYED_AS = {"stock_credit": Result.STOCK_CREDITED.value, "withdrawal": Result.TOPUP_WITHDRAWN.value}


def _reversal_replay(stored: dict[str, Any], request_hash: str, entry_id: str) -> Outcome:
    """The first answer to a reversal id: a stock-only correction answers ``stock_credited`` again, a
    withdrawn top-up ``topup_withdrawn``."""
    outcome = replay(stored, request_hash, entry_id)
    if outcome.ok and stored["kind"] in _REPLAYED_AS:
        return outcome._replace(result=_REPLAYED_AS[stored["kind"]])
    return outcome


_P = ParamSpec("_P")
# The journal's multi-row insert on PostgreSQL runs on the driver's cursor (``quota.ledger_pg``): its
# unique violation arrives as psycopg's own error, not wrapped by SQLAlchemy.
_LOST_TO_A_TWIN: tuple[type[Exception], ...] = (IntegrityError, psycopg.IntegrityError)


def _replays_on_conflict(use_case: Callable[_P, Outcome]) -> Callable[_P, Outcome]:
    """Run a keyed use case once more when its transaction loses the unique index to a twin.

    On PostgreSQL two deliveries of one request (a retry racing its original) can both find no stored
    answer; the second then waits on the allowance lock, and its insert under the same id fails
    (``uq_journal_entry_id``, ``pk_holds``) once the first commits. Its transaction has rolled back, so
    running it again finds the first's answer and replays it. Any other constraint fails the second run
    too, and is answered 409 ``constraint_violated`` (``card_backend.errors``)."""

    @functools.wraps(use_case)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> Outcome:
        try:
            return use_case(*args, **kwargs)
        except _LOST_TO_A_TWIN:
            return use_case(*args, **kwargs)

    return run


@dataclass(frozen=True, slots=True)
class Located:
    """Where a card's request lands: its allowance and terms, or the refusal that stops it; ``at``: the
    request's time, no earlier than the window it lands in (``not_before``)."""

    refusal: Result | None
    holder: tuple[str | None, int | None]
    state: AllowanceState | None = None
    terms: Any = None
    at: datetime | None = None


class LedgerService:
    def __init__(
        self,
        db: Engine,
        terms_for: TermsSource,
        engine: GroupCommitEngine | None = None,
        *,
        hold_ttl_s: int = 15 * 60,
        clock: Callable[[], datetime] = utcnow,
        topup_max_percent: int = 100,
        topup_period_max_percent: int = 100,
        advice_max_age_s: int | None = 72 * 3600,
    ) -> None:
        self.db = db
        self.terms_for = terms_for
        self.engine = engine
        self.hold_ttl = timedelta(seconds=hold_ttl_s)
        self.clock = clock
        # The deployment's bounds on top-ups, in percent of the allowance's base quantity for its period
        # (``CARD_TOPUP_MAX_PERCENT``, ``CARD_TOPUP_PERIOD_MAX_PERCENT``): one top-up, and all of a period's.
        self.topup_max_percent = topup_max_percent
        self.topup_period_max_percent = topup_period_max_percent
        # Undelivered advice is taken for this long after its debit (``CARD_UNDELIVERED_ADVICE_MAX_HOURS``);
        # later, a supervisor decides (``advice_too_late``). None: no limit.
        self.advice_max_age = None if advice_max_age_s is None else timedelta(seconds=advice_max_age_s)

    # redemptions --------------------------------------------------------------------------------
    def group_engine(self) -> GroupCommitEngine:
        """The group commit engine, started on first use (reads and holds never need it)."""
        if self.engine is None:
            self.engine = GroupCommitEngine(self.db, self.terms_for, clock=self.clock)
        return self.engine.start()

    def redeem(self, request: Redemption) -> Outcome:
        return self.group_engine().redeem(request)

    def redeem_batch(self, requests: Sequence[Redemption]) -> list[Outcome]:
        return self.group_engine().redeem_many(requests)

    # shared steps -------------------------------------------------------------------------------
    def _locate(self, conn: Connection, serial: str, product: str, point: str, now: datetime) -> Located:
        card = repo.find_cards(conn, [serial]).get(serial)
        if card is None:
            return Located(Result.CARD_UNKNOWN, (None, None))
        holder = (card.holder_type, card.holder_id)
        if card.state != "active":
            return Located(Result.CARD_BLOCKED, holder)
        if product not in repo.find_points(conn, [point]).get(point, frozenset()):
            return Located(Result.PRODUCT_NOT_SERVED, holder)
        keys = candidate_keys(card, product)
        states = repo.lock_current_allowances(conn, keys, now)
        now = not_before(now, *states.values())
        for key in keys:
            state = states.get(key)
            if state is not None:
                terms = self.terms_for(conn, state.rule_version_id)
                if is_current(state, terms, now):
                    return Located(None, (state.holder_type, state.holder_id), state, terms, now)
        return Located(Result.NOT_ELIGIBLE, holder, at=now)

    @staticmethod
    def _row(entry_id: str, kind: str, request_hash: str, now: datetime, **fields: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "entry_id": entry_id, "kind": kind, "result": Result.OK.value, "allowance_id": None,
            "holder_type": None, "holder_id": None, "product_code": None, "point_code": None,
            "card_serial": None, "quantity_qty": 0, "price_minor": 0, "remaining_qty": None,
            "payload_hash": request_hash, "ref_entry_id": None, "actor": None, "reason": None,
            "created_at": now,
        }
        row.update(fields)
        return row

    @staticmethod
    def _state_fields(state: AllowanceState) -> dict[str, Any]:
        return {"allowance_id": state.id, "holder_type": state.holder_type, "holder_id": state.holder_id,
                "product_code": state.product_code, "remaining_qty": state.remaining_qty}

    def _apply(self, conn: Connection, row: dict[str, Any], decision: Decision | None) -> Outcome:
        if decision is not None:
            row["result"] = decision.result.value
            if decision.ok:
                repo.write_allowances(conn, [decision.state])
                row.update(remaining_qty=decision.remaining_qty)
        repo.insert_entries(conn, [row])
        return outcome_of(row, replayed=False)

    # holds --------------------------------------------------------------------------------------
    @_replays_on_conflict
    def hold(self, hold_id: str, card_serial: str, product: str, quantity_qty: int, point: str,
             now: datetime | None = None) -> Outcome:
        """Reserve an estimate (the pump starts); the hold expires after the configured time."""
        now = now or self.clock()
        request_hash = payload_hash("hold", card=card_serial, product=product, qty=quantity_qty, point=point)
        with self.db.begin() as conn:
            repo.begin_write(conn)
            stored = repo.find_entries(conn, [hold_id]).get(hold_id)
            if stored is not None:
                return replay(stored, request_hash, hold_id)
            where = self._locate(conn, card_serial, product, point, now)
            now = where.at or now
            row = self._row(hold_id, "hold", request_hash, now, product_code=product, point_code=point,
                            card_serial=card_serial, holder_type=where.holder[0], holder_id=where.holder[1])
            if where.refusal is not None or where.state is None:
                row["result"] = (where.refusal or Result.NOT_ELIGIBLE).value
                return self._apply(conn, row, None)
            row.update(self._state_fields(where.state))
            decision = decide_hold(where.state, where.terms, quantity_qty, point, now)
            if decision.ok and self._stock_short(conn, point, product, quantity_qty, now):
                row["result"] = Result.POINT_OUT_OF_STOCK.value
                return self._apply(conn, row, None)
            if decision.ok:
                repo.insert_hold(conn, {"id": hold_id, "allowance_id": where.state.id, "point_code": point,
                                        "reserved_qty": quantity_qty, "state": "pending",
                                        "expires_at": now + self.hold_ttl, "created_at": now})
            if decision.possible_at is not None:
                row["reason"] = f"possible_at={decision.possible_at.isoformat()}"
            return self._apply(conn, row, decision)

    @staticmethod
    def _stock_short(conn: Connection, point: str, product: str, quantity_qty: int, now: datetime) -> bool:
        """Whether a tracked point lacks ``quantity_qty`` once its pending holds are set aside.

        Reserving sets the stock aside too: two pumps started on the last 50 L cannot both be granted.
        The stock row is locked after the allowance, as the engine locks it, so reservations at one
        point are serialised."""
        available = stock_repo.lock_available(conn, [(point, product)], now).get((point, product))
        return available is not None and available < quantity_qty

    @staticmethod
    def _reopen_renewal(conn: Connection, before: AllowanceState, decision: Decision, now: datetime) -> None:
        """A hold that opened a rolling window and dispensed nothing closes it again (``decide_release``);
        a renewal the daily refresh placed at that window's end then takes over now, or the next fill
        would open a whole window on the old row and the renewal a second one inside it."""
        if decision.ok and before.period_end is not None and decision.state.period_end is None:
            repo.start_pending_renewal(conn, (before.holder_type, before.holder_id, before.product_code), now)

    def _settle(self, hold_id: str, step: str, dispensed_qty: int, now: datetime | None,
                point: str | None = None) -> Outcome:
        now = now or self.clock()
        entry_id = derived_id(hold_id, step)
        request_hash = payload_hash(step, hold=hold_id, qty=dispensed_qty)
        with self.db.begin() as conn:
            repo.begin_write(conn)
            hold = repo.lock_hold(conn, hold_id)
            if hold is not None and point is not None and hold["point_code"] != point:
                return Outcome(entry_id, "wrong_point")
            stored = repo.find_entries(conn, [entry_id]).get(entry_id)
            if stored is not None:
                return replay(stored, request_hash, entry_id)
            opened = repo.find_entries(conn, [hold_id]).get(hold_id)
            if hold is None or opened is None:
                return Outcome(entry_id, "hold_unknown")
            row = self._row(entry_id, step, request_hash, now, ref_entry_id=hold_id,
                            product_code=opened["product_code"], point_code=hold["point_code"],
                            card_serial=opened["card_serial"])
            if hold["state"] != "pending":
                row["result"] = (Result.HOLD_EXPIRED if hold["state"] == "expired"
                                 else Result.HOLD_NOT_PENDING).value
                return self._apply(conn, row, None)
            state = repo.lock_allowance(conn, int(hold["allowance_id"]))
            assert state is not None, "a hold always points at its allowance"
            now = row["created_at"] = not_before(now, state)  # a restart by a later-clocked writer
            row.update(self._state_fields(state))
            reserved = int(hold["reserved_qty"])
            expired = now >= hold["expires_at"]
            terms = self.terms_for(conn, state.rule_version_id)
            if step == "post" and not expired:
                decision = decide_post(state, terms, reserved, dispensed_qty, hold["point_code"], now)
                if not decision.ok:
                    # The hold stays pending and nothing moved: answer without storing it under the
                    # post's id, or the pump's true figure (30 L after a refused 30.001 L) could never
                    # be posted and the fuel would leave the pump outside the card. A retry of the
                    # same wrong post is refused afresh.
                    return Outcome(entry_id, decision.result.value, remaining_qty=state.remaining_qty)
                self._reopen_renewal(conn, state, decision, now)
                if decision.ok:
                    repo.set_hold_state(conn, hold_id, "posted", dispensed_qty)
                    station = first_station(state, decision.state)
                    if station is not None:
                        key = (state.holder_type, state.holder_id, state.product_code)
                        repo.adopt_pending_homes(conn, [(key, station)], now)
                    row.update(quantity_qty=decision.debit_qty, price_minor=decision.price_minor)
                    pair = (hold["point_code"], state.product_code)
                    balance = stock_repo.lock_stock(conn, [pair]).get(pair)
                    if balance is not None and decision.debit_qty:
                        # What the pump dispensed is posted whatever the books say; a balance it takes
                        # below zero (a delivery recorded late) is named on the entry, and the stock
                        # report marks the pair overdrawn. Redemptions and other holds leave reserved
                        # stock alone, so this is not the usual path.
                        if balance < decision.debit_qty:
                            row["reason"] = f"stock_overdrawn: balance_qty={balance - decision.debit_qty}"
                        stock_repo.add_dispensed(conn, {pair: decision.debit_qty})
                return self._apply(conn, row, decision)
            final = "voided" if step == "void" and not expired else "expired"
            repo.set_hold_state(conn, hold_id, final, None)
            release = decide_release(state, terms, reserved)
            self._reopen_renewal(conn, state, release, now)
            if step != "post":
                return self._apply(conn, dict(row, kind="void" if final == "voided" else "expire"), release)
            # Posting an expired hold: the expiry is journalled under its own id (the reservation
            # returns) and the post is refused under the post's id, so a retry replays the refusal.
            expiry = dict(row, entry_id=derived_id(hold_id, "expire"), kind="expire",
                          payload_hash=payload_hash("expire", hold=hold_id, qty=0))
            released = self._apply(conn, expiry, release)
            refusal = dict(row, result=Result.HOLD_EXPIRED.value, remaining_qty=released.remaining_qty)
            return self._apply(conn, refusal, None)

    def post(self, hold_id: str, dispensed_qty: int, now: datetime | None = None,
             point: str | None = None) -> Outcome:
        """Post what was dispensed (≤ reserved; the rest returns); ``hold_expired`` after expiry.

        With ``point`` (the caller's own), a hold reserved at another point is answered ``wrong_point``
        and nothing moves: only the station whose pump runs may settle its hold. A post refused while
        the hold stays pending (``exceeds_hold``, ``invalid_quantity``) is not stored: the right figure
        may follow under the same derived id. What settles the hold is stored and replayed: the post,
        and ``hold_expired`` / ``hold_not_pending`` once it is expired, voided or posted."""
        return self._settle(hold_id, "post", dispensed_qty, now, point)

    def void(self, hold_id: str, now: datetime | None = None, point: str | None = None) -> Outcome:
        """Release the whole reservation. Only ``wrong_point`` and ``hold_unknown`` leave a hold pending,
        and neither is stored; a void of a settled hold is stored as ``hold_not_pending``."""
        return self._settle(hold_id, "void", 0, now, point)

    def expire_holds(self, now: datetime | None = None, limit: int = 1000) -> int:
        """The expiry job: return every overdue reservation; safe to run from several processes."""
        now = now or self.clock()
        with self.db.connect() as conn:
            due = repo.expired_hold_ids(conn, now, limit)
        count = 0
        for hold_id in due:
            outcome = self._settle(hold_id, "expire", 0, now)
            count += outcome.result == Result.OK and not outcome.replayed
        return count

    # corrections and grants ---------------------------------------------------------------------
    def reverse(self, entry_id: str, ref_entry_id: str, reason: str, actor: str,
                now: datetime | None = None, *, quantity_qty: int | None = None,
                stock_only_if_closed: bool = False, point: str | None = None) -> Outcome:
        """A supervisor's correction: a new entry crediting back ``quantity_qty`` of debit
        ``ref_entry_id`` — by default all that is left of it; nothing is edited.

        A debit (an ``ok`` redemption or pump post of a quantity) may be reversed in several parts, each
        its own entry under its own client-made id, until it is wholly reversed (then
        ``already_reversed``); more than is left is ``exceeds_reversible``. The allowance, the point's
        stock and the money follow the quantity (``decide_reverse``: the refund is the tier price of the
        window's top slice); the reversal that completes the latest fill of the window also gives back
        the fill's gap and, if it first tied the card to the point, the binding.

        Closed periods — one rule: an allowance window that has ended (a calendar period over, a rolling
        window ended or restarted, a newer row in its place) is never credited, since nothing left in it
        can be drawn. Such a reversal is refused ``period_closed`` and changes nothing, unless the caller
        asks for the stock-only correction (``stock_only_if_closed``): then a ``stock_credit`` entry puts
        the goods back in the point's stock and records the refund owed for them (what the debit cost,
        pro rata: ``unserved_refund``), and the answer is ``stock_credited``; the family's allowance is
        left as it is. Refusals are not journalled: the same id may be sent again once put right.
        Unknown ``ref_entry_id``: ``entry_not_found``; an entry that is no debit (a refusal, a hold, a
        reversal, an empty post): ``entry_not_reversible``. With ``point`` (a supervisor tied to a
        point), a debit made at another point is answered ``wrong_point`` and nothing changes.
        """
        fields: dict[str, object] = {"ref": ref_entry_id, "reason": reason}
        if quantity_qty is not None:  # without: the digest stored before partial reversals existed
            fields["qty"] = quantity_qty
        if stock_only_if_closed:
            fields["if_closed"] = "stock_only"
        return self._reverse(entry_id, ref_entry_id, reason, actor, now or self.clock(), quantity_qty,
                             stock_only_if_closed, payload_hash("reverse", **fields), point=point)

    @_replays_on_conflict
    def _reverse(self, entry_id: str, ref_entry_id: str, reason: str, actor: str, now: datetime,
                 quantity_qty: int | None, stock_only_if_closed: bool, request_hash: str,
                 max_age: timedelta | None = None, point: str | None = None) -> Outcome:
        with self.db.begin() as conn:
            repo.begin_write(conn)
            found = repo.find_entries(conn, [entry_id, ref_entry_id])
            if entry_id in found:
                return _reversal_replay(found[entry_id], request_hash, entry_id)
            original = found.get(ref_entry_id)
            if original is None:
                return Outcome(entry_id, Result.ENTRY_NOT_FOUND.value)
            if point is not None and original["point_code"] != point:
                return Outcome(entry_id, "wrong_point")
            if original["kind"] == "topup" and original["result"] == Result.OK.value:
                return self._withdraw_topup(conn, entry_id, original, quantity_qty, request_hash, actor,
                                            reason, now)
            if (original["kind"] not in repo.FILL_KINDS or original["result"] != Result.OK.value
                    or int(original["quantity_qty"]) <= 0 or original["allowance_id"] is None):
                return Outcome(entry_id, Result.ENTRY_NOT_REVERSIBLE.value)
            made = repo.utc(original["created_at"])
            if max_age is not None and made is not None and now - made > max_age:
                return Outcome(entry_id, Result.ADVICE_TOO_LATE.value)
            locked = self._lock_corrected(conn, original, entry_id, request_hash, now)
            if isinstance(locked, Outcome):
                return locked
            key, current, now = locked
            so_far = repo.reversals_of(conn, ref_entry_id)
            debit = ReversedDebit(int(original["quantity_qty"]), so_far.quantity_qty, original["point_code"])
            qty = debit.reversible_qty if quantity_qty is None else quantity_qty
            refusal = check_reversal(debit, qty)
            if refusal is not None:
                return Outcome(entry_id, refusal.value)
            row = self._row(entry_id, "reverse", request_hash, now, ref_entry_id=ref_entry_id, actor=actor,
                            reason=reason, point_code=original["point_code"],
                            card_serial=original["card_serial"], holder_type=key[0], holder_id=key[1],
                            product_code=key[2], allowance_id=int(original["allowance_id"]),
                            quantity_qty=-qty)
            if (current is None or current.id != row["allowance_id"]
                    or not window_holds(current, original["created_at"], now)):
                if not stock_only_if_closed:
                    return Outcome(entry_id, Result.PERIOD_CLOSED.value)
                refund = unserved_refund(int(original["price_minor"]), debit, so_far.refunded_minor, qty)
                row.update(kind="stock_credit", price_minor=-refund)
                self._credit_stock(conn, original["point_code"], key[2], qty)
                repo.insert_entries(conn, [row])
                return outcome_of(row, replayed=False)._replace(result=Result.STOCK_CREDITED.value)
            terms = self.terms_for(conn, current.rule_version_id)
            if qty == debit.reversible_qty:  # the debit is wholly reversed: its fill is undone
                debit = self._undone_fill(conn, key, current, original, debit, terms)
            decision = decide_reverse(current, terms, debit, qty)
            if not decision.ok:
                return Outcome(entry_id, decision.result.value, remaining_qty=current.remaining_qty)
            row.update(self._state_fields(current), price_minor=decision.price_minor)
            home = current.home_point_code
            if home is not None and decision.state.home_point_code is None:
                repo.unbind_pending(conn, key, now, home)
            self._reopen_renewal(conn, current, decision, now)
            self._credit_stock(conn, original["point_code"], key[2], qty)  # allowance rows, then stock
            return self._apply(conn, row, decision)

    @staticmethod
    def _lock_corrected(
        conn: Connection, original: dict[str, Any], entry_id: str, request_hash: str, now: datetime
    ) -> tuple[repo.HolderKey, AllowanceState | None, datetime] | Outcome:
        """The holder's current row of the entry a correction refers to, locked, open window or not (it
        serialises the corrections of one entry, so two cannot both take back its last litre), with the
        correction's time (``not_before``); or the answer of a twin of this request that committed while
        this one waited for the lock."""
        key = (str(original["holder_type"]), int(original["holder_id"]), str(original["product_code"]))
        current = repo.lock_current_allowances(conn, [key], now).get(key)
        stored = repo.find_entries(conn, [entry_id]).get(entry_id)
        if stored is not None:
            return _reversal_replay(stored, request_hash, entry_id)
        return key, current, not_before(now, current)

    def _withdraw_topup(self, conn: Connection, entry_id: str, original: dict[str, Any],
                        quantity_qty: int | None, request_hash: str, actor: str, reason: str,
                        now: datetime) -> Outcome:
        """A top-up granted in error, withdrawn (``reverse`` on a top-up's id): a ``withdrawal`` entry takes
        back what the holder has not drawn of it, from the window the top-up went to; nothing else moves.

        ``topup_withdrawn`` when done. Refused, and nothing stored: ``period_closed`` once that window has
        ended (its unused top-up ended with it; a rolling window the holder opened after the top-up counts
        as ended here, since the row does not tell which window a top-up went to), ``exceeds_allowance``
        beyond what the window has left (the answer's ``remaining_qty``: withdraw that much instead),
        ``already_reversed`` / ``exceeds_reversible`` as for a debit. A stock-only correction has nothing
        to correct for a top-up: a closed window is ``period_closed`` either way."""
        locked = self._lock_corrected(conn, original, entry_id, request_hash, now)
        if isinstance(locked, Outcome):
            return locked
        _, current, now = locked
        ref_entry_id = str(original["entry_id"])
        withdrawn = repo.reversals_of(conn, ref_entry_id).quantity_qty
        granted = ReversedDebit(int(original["quantity_qty"]), withdrawn)
        qty = granted.reversible_qty if quantity_qty is None else quantity_qty
        refusal = check_reversal(granted, qty)
        if refusal is not None:
            return Outcome(entry_id, refusal.value)
        if (current is None or current.id != int(original["allowance_id"])
                or not window_holds(current, original["created_at"], now)):
            return Outcome(entry_id, Result.PERIOD_CLOSED.value)
        decision = decide_withdraw_topup(current, granted, qty)
        if not decision.ok:
            return Outcome(entry_id, decision.result.value, remaining_qty=current.remaining_qty)
        row = self._row(entry_id, "withdrawal", request_hash, now, ref_entry_id=ref_entry_id, actor=actor,
                        reason=reason, quantity_qty=-qty, **self._state_fields(current))
        return self._apply(conn, row, decision)._replace(result=Result.TOPUP_WITHDRAWN.value)

    @staticmethod
    def _undone_fill(conn: Connection, key: repo.HolderKey, state: AllowanceState, original: dict[str, Any],
                     debit: ReversedDebit, terms: Terms) -> ReversedDebit:
        """What the journal says about a fill being wholly reversed: whether it is the window's latest
        live fill, the window's previous one, and whether it is what tied the card to its station."""
        other = repo.latest_live_fill(conn, key, state.id, state.period_start, str(original["entry_id"]))
        if other is not None and other[0] > int(original["seq"]):
            return debit  # a later fill of the window keeps the gap and the station
        first = (terms.binding_max_changes is not None and state.home_point_code is not None
                 and state.home_point_code == original["point_code"]
                 and not repo.bound_otherwise(conn, key, str(original["entry_id"])))
        return debit._replace(latest_fill=True, previous_fill_at=None if other is None else other[1],
                              first_binding=first)

    @staticmethod
    def _credit_stock(conn: Connection, point_code: str | None, product_code: str, qty: int) -> None:
        """Goods not handed over go back into the point's stock, if the point's stock is counted."""
        pair = (point_code or "", product_code)
        if point_code is not None and stock_repo.lock_stock(conn, [pair]):
            stock_repo.add_dispensed(conn, {pair: -qty})

    def undelivered(self, ref_entry_id: str, point_code: str, actor: str,
                    now: datetime | None = None) -> Outcome:
        """Reversal advice: the point that sent debit ``ref_entry_id`` never learnt its answer and
        handed nothing over (the answer was lost, then the card's offline ceiling refused).

        Applied, what is left of the debit is credited back by a reversal whose id is derived from the
        debit's (so the advice is idempotent; result ``ok``, or ``already_reversed`` if a supervisor
        reversed it all). If the debit's allowance window has closed meanwhile, the advice — which says
        nothing was handed over — makes the stock-only correction (``reverse``): the goods go back into
        the point's stock, the refund is recorded, the allowance is not credited; result
        ``stock_credited``. Advice coming more than ``advice_max_age`` after the debit is refused,
        ``advice_too_late``, and changes nothing: an agent that was away that long is a supervisor's case
        (the agent reports it as a conflict), or a station could hand goods over and credit them back at
        leisure. Not applied (it never arrived, or has not yet), a ``void`` entry takes its
        id — result ``voided`` — so a late arrival is answered ``exists_with_different_payload`` and
        never debits. A refused debit needs nothing: ``not_debited``; another point's: ``wrong_point``.
        """
        now = now or self.clock()
        original = self._entry_or_void(ref_entry_id, point_code, actor, now)
        if isinstance(original, Outcome):
            return original
        if original["point_code"] != point_code:
            return Outcome(ref_entry_id, "wrong_point")
        if original["kind"] == "void":
            return Outcome(ref_entry_id, "voided", replayed=True)
        if original["kind"] != "redeem" or original["result"] != Result.OK.value:
            return Outcome(ref_entry_id, "not_debited")
        reversal_id = str(uuid.uuid5(_UNDELIVERED_IDS, ref_entry_id))
        # The advice's payload is its debit: the digest is the one stored before partial reversals and
        # the stock-only correction existed, so an advice repeated across the upgrade still replays.
        request_hash = payload_hash("reverse", ref=ref_entry_id, reason=UNDELIVERED_REASON)
        return self._reverse(reversal_id, ref_entry_id, UNDELIVERED_REASON, actor, now, None, True,
                             request_hash, self.advice_max_age)

    def _entry_or_void(
        self, entry_id: str, point_code: str, actor: str, now: datetime
    ) -> dict[str, Any] | Outcome:
        """The stored entry under ``entry_id``, or a ``void`` entry written there now if none is."""
        for attempt in (1, 2):
            try:
                with self.db.begin() as conn:
                    repo.begin_write(conn)
                    stored = repo.find_entries(conn, [entry_id]).get(entry_id)
                    if stored is not None:
                        return stored
                    row = self._row(entry_id, "void", payload_hash("void", point=point_code), now,
                                    result="voided", point_code=point_code, actor=actor,
                                    reason=UNDELIVERED_REASON)
                    repo.insert_entries(conn, [row])
                    return Outcome(entry_id, "voided")
            except repo.DATABASE_ERRORS:
                if attempt == 2:
                    raise
                # the debit itself committed meanwhile under the same id (unique index): read it again
        raise AssertionError("unreachable")

    @_replays_on_conflict
    def topup(self, entry_id: str, holder_type: str, holder_id: int, product: str, quantity_qty: int,
              reason: str, actor: str, cap_qty: int | None = None, now: datetime | None = None) -> Outcome:
        """A one-off extra grant (e.g. a travel top-up capped at 40 L): granted and topup grow.

        Bounded by the deployment (``topup_max_percent`` of the allowance's base quantity at once,
        ``topup_period_max_percent`` for the period's top-ups together) and by ``cap_qty``, the caller's
        bound on the period's top-ups, when tighter; beyond either: ``exceeds_allowance``. The cap is
        part of the payload: the same id with another cap is ``exists_with_different_payload``."""
        now = now or self.clock()
        capped = {} if cap_qty is None else {"cap": cap_qty}  # without a cap: the digest stored before
        request_hash = payload_hash("topup", holder=f"{holder_type}:{holder_id}", product=product,
                                    qty=quantity_qty, reason=reason, **capped)
        with self.db.begin() as conn:
            repo.begin_write(conn)
            stored = repo.find_entries(conn, [entry_id]).get(entry_id)
            if stored is not None:
                return replay(stored, request_hash, entry_id)
            key = (holder_type, holder_id, product)
            state = repo.lock_current_allowances(conn, [key], now).get(key)
            now = not_before(now, state)
            row = self._row(entry_id, "topup", request_hash, now, actor=actor, reason=reason,
                            holder_type=holder_type, holder_id=holder_id, product_code=product)
            if state is None or not is_current(state, self.terms_for(conn, state.rule_version_id), now):
                row["result"] = Result.NOT_ELIGIBLE.value
                return self._apply(conn, row, None)
            row.update(self._state_fields(state), quantity_qty=quantity_qty)
            period_cap = state.base_qty * self.topup_period_max_percent // 100
            decision = decide_topup(state, self.terms_for(conn, state.rule_version_id), quantity_qty, now,
                                    period_cap if cap_qty is None else min(cap_qty, period_cap))
            if decision.ok and quantity_qty > state.base_qty * self.topup_max_percent // 100:
                decision = Decision(Result.EXCEEDS_ALLOWANCE, state)
            if not decision.ok:
                row["quantity_qty"] = 0
            return self._apply(conn, row, decision)

    @_replays_on_conflict
    def rebind(self, entry_id: str, holder_type: str, holder_id: int, product: str, point: str,
               actor: str, now: datetime | None = None) -> Outcome:
        """Move a holder's home point; changes beyond the rule's limit per period are refused.

        The point must exist, be active and serve the product (``point_unknown``,
        ``product_not_served``): a mistyped code is refused without using up one of the changes."""
        now = now or self.clock()
        request_hash = payload_hash("rebind", holder=f"{holder_type}:{holder_id}", product=product,
                                    point=point)
        with self.db.begin() as conn:
            repo.begin_write(conn)
            stored = repo.find_entries(conn, [entry_id]).get(entry_id)
            if stored is not None:
                return replay(stored, request_hash, entry_id)
            key = (holder_type, holder_id, product)
            state = repo.lock_current_allowances(conn, [key], now).get(key)
            now = not_before(now, state)
            row = self._row(entry_id, "rebind", request_hash, now, actor=actor, point_code=point,
                            holder_type=holder_type, holder_id=holder_id, product_code=product)
            if state is None:
                row["result"] = Result.NOT_ELIGIBLE.value
                return self._apply(conn, row, None)
            row.update(self._state_fields(state))
            served = repo.find_points(conn, [point]).get(point)
            if served is None or product not in served:
                row["result"] = (Result.POINT_UNKNOWN if served is None else Result.PRODUCT_NOT_SERVED).value
                return self._apply(conn, row, None)
            decision = decide_rebind(state, self.terms_for(conn, state.rule_version_id), point, now)
            if decision.ok:  # a renewal waiting to take over (rolling refresh) follows the card's station
                repo.move_pending_home(conn, key, now, point)
            return self._apply(conn, row, decision)

    # stock and reads (one short transaction each; see quota.ledger_reports) -----------------------
    def deliver_stock(self, delivery_id: str, point_code: str, product_code: str, quantity_qty: int,
                      reference: str = "", now: datetime | None = None) -> ledger_reports.Delivery:
        """Record a delivery once per client-made id (see ``ledger_reports.deliver_stock``)."""
        payload = DeliveryPayload(point_code, product_code, quantity_qty, reference)
        return ledger_reports.deliver_stock(self.db, delivery_id, payload, now or self.clock())

    def stock_report(self, point_code: str | None, day_from: date, day_to: date,
                     zone: ZoneInfo = ledger_reports.UTC_ZONE) -> dict[str, Any]:
        return ledger_reports.stock_report(self.db, point_code, day_from, day_to, zone)

    def quota_for_card(
        self, serial: str, now: datetime | None = None, point_code: str | None = None
    ) -> list[ledger_reports.QuotaLine] | None:
        return ledger_reports.quota_for_card(self.db, self.terms_for, serial, now or self.clock(), point_code)

    def family_draws(self, family_id: int, limit: int = 200) -> list[dict[str, Any]]:
        return ledger_reports.family_draws(self.db, family_id, limit)

    # journal seals ------------------------------------------------------------------------------
    def seal(self, now: datetime | None = None, max_entries: int = 10_000) -> list[chain.Seal]:
        """Seal every committed unsealed entry, in seals of at most ``max_entries`` (returned with their
        ids). Each new seal is logged once committed (``seal_repository.log_sealed``: id, seqs, hash),
        whoever seals: the log is an anchor trail kept outside the database."""
        now = now or self.clock()
        with self.db.begin() as conn:
            watermark = seal_repo.committed_watermark(conn)
        made: list[chain.Seal] = []
        with self.db.begin() as conn:
            repo.begin_write(conn)
            seal_repo.lock_sealing(conn)
            last_seq, prev = seal_repo.last_seal(conn)
            while last_seq < watermark:
                entries = repo.entries_page(conn, last_seq, watermark, max_entries)
                if not entries:
                    break
                seal = chain.make_seal(prev, entries, first_seq=last_seq + 1)  # contiguous ranges
                seal = seal.with_id(seal_repo.insert_seal(conn, seal, now))
                made.append(seal)
                last_seq, prev = seal.last_seq, seal.seal_hash
        seal_repo.log_sealed(made)
        return made

    def reconcile(self, limit: int = 1000) -> audit.AllowanceAudit:
        """Every allowance row against its journal and its pending holds (invariants 1 and 2), and every
        journal debit against its allowance row: names the rows an edit by SQL changed, re-keyed or
        deleted (``quota.domain.audit``), at most ``limit`` of them.

        A calendar row has one period, so all its debits count; a rolling row's count from its window
        start, which the journal must explain. Which rows are calendar rows comes from the terms of the
        rule versions the allowances hold (a version whose terms cannot be had is taken as rolling: the
        laxer check, never a false alarm)."""
        report = audit.AllowanceAudit()
        with self.db.connect() as conn:
            report.allowances_checked = repo.count_allowances(conn)
            calendar: list[int] = []
            for version in repo.allowance_rule_versions(conn):
                try:
                    terms = self.terms_for(conn, version)
                except (LookupError, ValueError, TypeError):  # unknown, or a body no rule reads
                    continue
                if audit.one_period(terms):
                    calendar.append(version)
            rows = repo.allowances_off_the_journal(conn, limit + 1, calendar)
        report.truncated = len(rows) > limit
        for figures in rows[:limit]:
            report.findings.extend(audit.discrepancies(figures))
        return report

    def verify(self, anchors: Sequence[chain.Anchor] = ()) -> chain.Report:
        """Recompute the chain and name every changed, removed, inserted, reordered or unsealed entry,
        and every anchor (a seal id and hash kept outside the database) the chain no longer holds.

        One ordered pass over every journal row up to the last sealed seq, streamed in pages beside the
        seals; seals and rows made after the pass starts are left to the next run. The report's ``head``
        (last seal id, its last seq, its hash) is the anchor to keep for the next run."""
        with self.db.connect() as conn:
            bounds = seal_repo.last_seal_bounds(conn)
            last_id, last_seq = bounds if bounds is not None else (0, 0)
            seals = seal_repo.seals_upto(conn, last_id)
            return chain.verify_journal(seals, repo.entries_upto(conn, last_seq), anchors)
