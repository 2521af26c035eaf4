"""Decide one movement of one allowance: pure, no I/O, no clock.

The engine reads the allowance row, calls a function here with the row's state, the rule's
``Terms``, the request and ``now``, and writes back the returned state in the same transaction. Every
check a redemption needs (rolling window, batches, fill cap, gap, binding, allowance, tiers) reads
only that one row, so the hot path stays one UPDATE and one INSERT. Keeping it pure lets the same
code decide on SQLite, on PostgreSQL and in unit tests, and makes a group of redemptions resolved in
a fixed order give exactly the results of a serial execution.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from quota.domain import batches
from quota.domain.terms import PeriodKind, Terms


class Result(StrEnum):
    """Snake_case facts shared by the API, the journal and the reader."""

    OK = "ok"
    EXCEEDS_ALLOWANCE = "exceeds_allowance"
    NOT_ELIGIBLE = "not_eligible"
    CARD_BLOCKED = "card_blocked"
    CARD_UNKNOWN = "card_unknown"
    EXISTS_WITH_DIFFERENT_PAYLOAD = "exists_with_different_payload"
    POINT_OUT_OF_STOCK = "point_out_of_stock"
    POINT_UNKNOWN = "point_unknown"
    PRODUCT_NOT_SERVED = "product_not_served"
    HOLD_EXPIRED = "hold_expired"
    HOLD_NOT_PENDING = "hold_not_pending"
    EXCEEDS_HOLD = "exceeds_hold"
    EXCEEDS_FILL_CAP = "exceeds_fill_cap"
    TOO_SOON = "too_soon"
    POINT_NOT_BOUND = "point_not_bound"
    INVALID_QUANTITY = "invalid_quantity"
    EXCEEDS_USED = "exceeds_used"
    BINDING_CHANGES_EXHAUSTED = "binding_changes_exhausted"
    # reversals (``decide_reverse``, ``LedgerService.reverse``)
    ENTRY_NOT_FOUND = "entry_not_found"
    ENTRY_NOT_REVERSIBLE = "entry_not_reversible"
    ALREADY_REVERSED = "already_reversed"
    EXCEEDS_REVERSIBLE = "exceeds_reversible"
    PERIOD_CLOSED = "period_closed"
    STOCK_CREDITED = "stock_credited"
    TOPUP_WITHDRAWN = "topup_withdrawn"
    ADVICE_TOO_LATE = "advice_too_late"


class AllowanceState(NamedTuple):
    """The columns of one ``allowances`` row that a decision reads or writes.

    A named tuple, not a frozen dataclass: a group makes two per redemption (the row read and the row
    written back), and a frozen dataclass of 16 fields cost ~4 µs to build, a tuple ~0.5 µs. Change
    one with ``state._replace(...)``.
    """

    id: int
    holder_type: str
    holder_id: int
    product_code: str
    rule_version_id: int
    period_start: datetime
    period_end: datetime | None
    base_qty: int
    granted_qty: int
    used_qty: int = 0
    held_qty: int = 0
    carried_qty: int = 0
    topup_qty: int = 0
    last_redeemed_at: datetime | None = None
    home_point_code: str | None = None
    binding_changes: int = 0

    @property
    def remaining_qty(self) -> int:
        return self.granted_qty - self.used_qty - self.held_qty


# The ledger's values are named tuples: a group builds several per redemption, and a frozen dataclass
# costs ~0.25 µs per field to build (each field set through object.__setattr__), a tuple next to nothing.
class TierCharge(NamedTuple):
    """The part of one debit that falls in one price tier."""

    tier: str
    qty: int
    price_minor: int


class Decision(NamedTuple):
    """The answer to one request: ``state`` is the row to write back (unchanged on a refusal)."""

    result: Result
    state: AllowanceState
    debit_qty: int = 0
    price_minor: int = 0
    charges: tuple[TierCharge, ...] = ()
    possible_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.result is Result.OK

    @property
    def remaining_qty(self) -> int:
        return self.state.remaining_qty


def is_current(state: AllowanceState, terms: Terms, now: datetime) -> bool:
    """Whether the row serves ``now``; a rolling row does (it restarts its window itself) unless it
    grants, holds and has used nothing: the renewal a holder who lost eligibility gets (its card is
    then ``not_eligible``, and the quota view shows nothing)."""
    if now < state.period_start:
        return False
    if terms.period_kind is PeriodKind.ROLLING:
        return state.granted_qty > 0 or state.used_qty > 0 or state.held_qty > 0
    return state.period_end is None or now < state.period_end


def current_window(state: AllowanceState, terms: Terms, now: datetime) -> AllowanceState:
    """Open or restart a rolling window ("every N days since the last redemption").

    A rolling window starts at the first redemption after the previous one ended; it then lasts
    ``rolling_days``. A restart clears what the window used, the one-off top-ups and carry of the
    ended window and its count of station changes (the card stays bound to its station); pending holds
    keep their reservation. A row with no window open (``period_end`` is None, nothing used: never
    drawn, or closed by ``close_ended_window`` / ``_unopened``) keeps its top-ups and carry into the
    window it opens.
    """
    if terms.period_kind is not PeriodKind.ROLLING or terms.rolling_days is None:
        return state
    if state.period_end is not None and now < state.period_end:
        return state
    end = now + timedelta(days=terms.rolling_days)
    if state.period_end is None and state.used_qty == 0:
        return state._replace(period_start=now, period_end=end)
    return _next_window(state, now, end)


def _next_window(state: AllowanceState, start: datetime, end: datetime | None) -> AllowanceState:
    """The row as the window after an ended one, from ``start`` (``end`` None: opened by the next fill):
    nothing used, the ended window's one-off top-ups and carry gone, and its station changes given back
    ("n changes per period"; the home point stays)."""
    extra = state.topup_qty + state.carried_qty
    return state._replace(period_start=start, period_end=end, used_qty=0, topup_qty=0, carried_qty=0,
                          granted_qty=state.granted_qty - extra, binding_changes=0)


def close_ended_window(state: AllowanceState, terms: Terms, now: datetime) -> AllowanceState:
    """An ended rolling window cleared as a restart clears it, but left unopened.

    Used before a movement that is not a fill (a top-up, a change of station): what it adds must land
    in the next window, not in the ended one the next fill's restart would clear, and it must not start
    the "every N days since the last redemption" clock itself; the next fill opens the window
    (``current_window``).
    """
    if terms.period_kind is not PeriodKind.ROLLING or terms.rolling_days is None:
        return state
    if state.period_end is None or now < state.period_end:
        return state
    return _next_window(state, now, None)


def _unopened(state: AllowanceState, terms: Terms) -> AllowanceState:
    """A rolling window holding no fill (its holds voided, expired or posted empty) is closed again,
    so a hold that never dispensed does not start the rolling clock: the next fill opens the window."""
    if (
        terms.period_kind is PeriodKind.ROLLING
        and state.period_end is not None
        and state.used_qty == 0
        and state.held_qty == 0
    ):
        return state._replace(period_end=None)
    return state


def ceiling_qty(state: AllowanceState, terms: Terms, now: datetime) -> int:
    """The most the row may have used plus held at ``now``.

    Dated batches gate the subsidised base with the rule language's semantics
    (``quota.domain.batches``: regular batches cumulative, a catch-up batch open early to holders who
    drew nothing; carry and top-ups ungated; later price tiers once the whole base is out), so
    ``explain`` and the ledger can never disagree.
    """
    if not terms.batches:
        return state.granted_qty
    return batches.limit_qty(terms.batches, state.period_start, now, state.granted_qty, state.used_qty,
                             state.base_qty, state.carried_qty + state.topup_qty)


def price_charges(state: AllowanceState, terms: Terms, qty: int) -> tuple[TierCharge, ...]:
    """Price the slice ``[used, used + qty)`` of the period across the tiers.

    The first tier is the base entitlement (or its fixed size) plus carried and topped-up quantity;
    the later tiers are fixed slices. Each tier's price is rounded half up on its own, in minor units.
    """
    charges: list[TierCharge] = []
    start = state.used_qty
    end = start + qty
    lower = 0
    for index, tier in enumerate(terms.tiers):
        size = state.base_qty if tier.qty is None else tier.qty
        if index == 0:
            size += state.carried_qty + state.topup_qty
        upper = lower + size
        overlap = min(end, upper) - max(start, lower)
        if overlap > 0:
            price = (overlap * tier.price_minor * 2 + terms.price_per_qty) // (2 * terms.price_per_qty)
            charges.append(TierCharge(tier.name, overlap, price))
        lower = upper
    if terms.tiers and end > lower:
        last = terms.tiers[-1]
        overlap = end - max(start, lower)
        price = (overlap * last.price_minor * 2 + terms.price_per_qty) // (2 * terms.price_per_qty)
        charges.append(TierCharge(last.name, overlap, price))
    return tuple(charges)


def _check_request(
    state: AllowanceState, terms: Terms, quantity_qty: int, point_code: str, now: datetime
) -> Decision | None:
    """The refusals shared by a redemption and a hold, in the order a clerk would explain them."""
    if quantity_qty <= 0:
        return Decision(Result.INVALID_QUANTITY, state)
    if terms.fill_cap_qty is not None and quantity_qty > terms.fill_cap_qty:
        return Decision(Result.EXCEEDS_FILL_CAP, state)
    if (
        terms.binding_max_changes is not None
        and state.home_point_code is not None
        and state.home_point_code != point_code
    ):
        return Decision(Result.POINT_NOT_BOUND, state)
    if state.held_qty and (terms.min_gap_s is not None or terms.binding_max_changes is not None):
        # a pump hold is a fill in progress: one fill at a time where fills are spaced, or tied to a
        # station (a card not yet tied could otherwise start pumps at two stations and fill at both)
        return Decision(Result.TOO_SOON, state)
    if terms.min_gap_s is not None and state.last_redeemed_at is not None:
        possible_at = state.last_redeemed_at + timedelta(seconds=terms.min_gap_s)
        if now < possible_at:
            return Decision(Result.TOO_SOON, state, possible_at=possible_at)
    if state.used_qty + state.held_qty + quantity_qty > ceiling_qty(state, terms, now):
        return Decision(Result.EXCEEDS_ALLOWANCE, state)
    return None


def _bind(state: AllowanceState, terms: Terms, point_code: str) -> str | None:
    if terms.binding_max_changes is not None and state.home_point_code is None:
        return point_code
    return state.home_point_code


def decide_redeem(
    state: AllowanceState, terms: Terms, quantity_qty: int, point_code: str, now: datetime
) -> Decision:
    """Debit ``quantity_qty`` at ``point_code``, or say why not."""
    window = current_window(state, terms, now)
    refusal = _check_request(window, terms, quantity_qty, point_code, now)
    if refusal is not None:
        return refusal._replace(state=state)
    charges = price_charges(window, terms, quantity_qty)
    new = _debited(window, quantity_qty, now, _bind(window, terms, point_code))
    price = charges[0].price_minor if len(charges) == 1 else sum(c.price_minor for c in charges)
    return Decision(Result.OK, new, quantity_qty, price, charges)


def _debited(s: AllowanceState, qty: int, now: datetime, home: str | None) -> AllowanceState:
    """``s._replace(used_qty=…, last_redeemed_at=…, home_point_code=…)`` without its keyword
    handling: this runs once per redemption on the hot path."""
    return AllowanceState(s.id, s.holder_type, s.holder_id, s.product_code, s.rule_version_id,
                          s.period_start, s.period_end, s.base_qty, s.granted_qty, s.used_qty + qty,
                          s.held_qty, s.carried_qty, s.topup_qty, now, home, s.binding_changes)


def decide_hold(
    state: AllowanceState, terms: Terms, quantity_qty: int, point_code: str, now: datetime
) -> Decision:
    """Reserve an estimate (the pump starts): the same checks as a redemption, ``held`` grows.

    The gap and the binding are checked here but written only when the hold posts a quantity
    (``decide_post``): a hold voided or expired was no fill. A rolling window opens (or restarts) here,
    since the reservation is taken from it; released with nothing dispensed, it closes again.
    """
    window = current_window(state, terms, now)
    refusal = _check_request(window, terms, quantity_qty, point_code, now)
    if refusal is not None:
        return refusal._replace(state=state)
    return Decision(Result.OK, window._replace(held_qty=window.held_qty + quantity_qty))


def decide_post(
    state: AllowanceState, terms: Terms, reserved_qty: int, dispensed_qty: int, point_code: str,
    now: datetime,
) -> Decision:
    """Post what the pump dispensed (at most the reservation); the rest returns to the allowance.

    A post of more than nothing is the fill: it sets the time the gap counts from and binds the home
    point, as a redemption does. A post of nothing is a release."""
    if dispensed_qty < 0:
        return Decision(Result.INVALID_QUANTITY, state)
    if dispensed_qty > reserved_qty:
        return Decision(Result.EXCEEDS_HOLD, state)
    released = state._replace(held_qty=max(state.held_qty - reserved_qty, 0))
    if dispensed_qty == 0:
        return Decision(Result.OK, _unopened(released, terms))
    charges = price_charges(released, terms, dispensed_qty)
    new = _debited(released, dispensed_qty, now, _bind(released, terms, point_code))
    return Decision(Result.OK, new, dispensed_qty, sum(c.price_minor for c in charges), charges)


def decide_release(state: AllowanceState, terms: Terms, reserved_qty: int) -> Decision:
    """Void or expire a hold: its whole reservation returns, and it leaves no trace of a fill."""
    released = state._replace(held_qty=max(state.held_qty - reserved_qty, 0))
    return Decision(Result.OK, _unopened(released, terms))


class ReversedDebit(NamedTuple):
    """The debit a reversal credits back, as the journal tells it (``quota.ledger_repository``).

    A *live* fill is an ``ok`` redemption or pump post of a quantity not yet wholly reversed. The last
    three fields matter only to a reversal that completes the debit: whether no live fill of the window
    came after it, when the window's latest other live fill was, and whether it is what tied the card to
    its station (no other live fill of the holder and product, in any period, and no change of station).
    """

    quantity_qty: int
    reversed_qty: int = 0
    point_code: str | None = None
    latest_fill: bool = False
    previous_fill_at: datetime | None = None
    first_binding: bool = False

    @property
    def reversible_qty(self) -> int:
        """What is left of the debit to reverse after earlier (partial) reversals."""
        return self.quantity_qty - self.reversed_qty


def window_holds(state: AllowanceState, debited_at: datetime, now: datetime) -> bool:
    """Whether the allowance's window that a debit made at ``debited_at`` drew from still serves at
    ``now``: a calendar period that ended, or a rolling window that ended or restarted since, is closed —
    what it left unused can never be drawn, so a reversal cannot credit it (``period_closed``). The
    caller checks as well that the row is still the holder's latest (a new period's row supersedes it)."""
    if debited_at < state.period_start or now < state.period_start:
        return False
    return state.period_end is None or now < state.period_end


def check_reversal(debit: ReversedDebit, quantity_qty: int) -> Result | None:
    """The refusals of any reversal, in a closed window or not: nothing left, or more than is left."""
    if debit.reversible_qty <= 0:
        return Result.ALREADY_REVERSED
    if quantity_qty <= 0:
        return Result.INVALID_QUANTITY
    if quantity_qty > debit.reversible_qty:
        return Result.EXCEEDS_REVERSIBLE
    return None


def decide_reverse(
    state: AllowanceState, terms: Terms, debit: ReversedDebit, quantity_qty: int
) -> Decision:
    """Credit back ``quantity_qty`` of a debit of the window (several partial reversals may follow one
    another until the debit is wholly reversed); ``used`` never goes below zero.

    Money: the refund is what the tiers charge for the top slice ``[used - q, used)`` of the window — the
    marginal goods — not what the reversed debit itself cost. Debits are priced by the same slices
    bottom-up, so what the holder paid net always equals the tier price of what the window has used
    (each movement rounded half up per tier on its own), whichever debit is reversed and in what
    parts. Carried and topped-up quantity widen the first tier as they do for a debit; a top-up granted
    after a debit paid a later tier does not reprice that debit (nothing is repriced), and batches gate
    how much may be drawn, not its price. The refund is journalled as the reversal's negative price.

    A reversal that completes the debit undoes the fill itself when no live fill of the window came
    after it: the minimum gap counts again from the window's previous live fill (none: no gap), and if
    the debit is what tied the card to its station (``ReversedDebit.first_binding``) the card is untied
    — a supervisor crediting back a fill that never happened must not leave the family ``too_soon`` or
    ``point_not_bound``. A rolling window left with nothing used nor held is closed again, as a hold
    that dispensed nothing leaves it: the next fill opens the window. A partial reversal leaves the gap,
    the binding and the window alone: goods were handed over.
    """
    refusal = check_reversal(debit, quantity_qty)
    if refusal is not None:
        return Decision(refusal, state)
    if quantity_qty > state.used_qty:
        return Decision(Result.EXCEEDS_USED, state)
    before = state._replace(used_qty=state.used_qty - quantity_qty)
    charges = price_charges(before, terms, quantity_qty)
    new = before
    if quantity_qty == debit.reversible_qty and debit.latest_fill:
        home = new.home_point_code
        if (terms.binding_max_changes is not None and debit.first_binding
                and home is not None and home == debit.point_code):
            home = None
        new = _unopened(new._replace(last_redeemed_at=debit.previous_fill_at, home_point_code=home), terms)
    refund = sum(c.price_minor for c in charges)
    return Decision(Result.OK, new, -quantity_qty, -refund, charges)


def unserved_refund(paid_minor: int, debit: ReversedDebit, refunded_minor: int, quantity_qty: int) -> int:
    """The refund owed for ``quantity_qty`` of a debit of a closed window that was not handed over.

    The window's used stays as it is (its quota cannot be given back), so no tier slice is freed: the
    holder gets back what it paid for those goods — the debit's price pro rata, rounded half up, the
    part that completes the debit taking the rest — so the refunds of one debit never sum to more than
    it cost (less if earlier reversals in its window already refunded it by the tiers)."""
    left = max(paid_minor - refunded_minor, 0)
    if quantity_qty >= debit.reversible_qty or debit.quantity_qty <= 0:
        return left
    share = (paid_minor * quantity_qty * 2 + debit.quantity_qty) // (2 * debit.quantity_qty)
    return max(min(share, left), 0)


def decide_topup(
    state: AllowanceState, terms: Terms, quantity_qty: int, now: datetime, cap_qty: int | None = None
) -> Decision:
    """Grant a one-off extra quantity; ``cap_qty`` bounds the top-ups of the period (e.g. 40 L).

    On a rolling row whose window has ended, the top-up goes to the next window (``close_ended_window``):
    granted into the ended one, the next fill's restart would clear it."""
    if quantity_qty <= 0:
        return Decision(Result.INVALID_QUANTITY, state)
    window = close_ended_window(state, terms, now)
    if cap_qty is not None and window.topup_qty + quantity_qty > cap_qty:
        return Decision(Result.EXCEEDS_ALLOWANCE, state)
    new = window._replace(
        granted_qty=window.granted_qty + quantity_qty,
        topup_qty=window.topup_qty + quantity_qty,
    )
    return Decision(Result.OK, new, 0)


def decide_withdraw_topup(state: AllowanceState, topup: ReversedDebit, quantity_qty: int) -> Decision:
    """Withdraw ``quantity_qty`` of a top-up granted in error (a supervisor's correction, journalled as a
    ``withdrawal`` referring to the top-up): granted and topup shrink by it; nothing else moves.

    Only what the holder has not drawn may be withdrawn: more than the window has left (granted less used
    and held) is ``exceeds_allowance`` and the answer says what is left, so a supervisor may withdraw that
    part. The window the top-up went to must still be the row's (the caller checks ``window_holds``): a
    window that ended took its unused top-up with it."""
    refusal = check_reversal(topup, quantity_qty)
    if refusal is not None:
        return Decision(refusal, state)
    if quantity_qty > state.topup_qty:
        return Decision(Result.EXCEEDS_REVERSIBLE, state)
    if quantity_qty > state.remaining_qty:
        return Decision(Result.EXCEEDS_ALLOWANCE, state)
    new = state._replace(granted_qty=state.granted_qty - quantity_qty,
                         topup_qty=state.topup_qty - quantity_qty)
    return Decision(Result.OK, new, 0)


def not_before(now: datetime, *states: AllowanceState | None) -> datetime:
    """A time read before the allowance rows were locked, moved up to the window start a writer whose clock
    was read later set while this waited (a rolling restart): the movement lands in that window, so it is
    dated and decided no earlier than it (else ``not_eligible`` or ``period_closed`` for a window "not yet
    begun", and a journal row before the window it counts in). Rows are locked only if they began by
    ``now``, so a later start can only come from such a writer."""
    return max([now, *(s.period_start for s in states if s is not None)])


def first_station(before: AllowanceState, after: AllowanceState) -> str | None:
    """The station a fill (a redemption or a hold's post) first tied the card to, or None: rows waiting
    to take over (a renewal, a period opened ahead) take it too (``adopt_pending_homes``)."""
    return after.home_point_code if before.home_point_code is None else None


def decide_rebind(state: AllowanceState, terms: Terms, point_code: str, now: datetime) -> Decision:
    """Move the home point; each move after the first binding counts against the period's limit.

    On a rolling row whose window has ended the move counts against the next window's limit
    (``close_ended_window``): a car need not fill once more at its old station to change it."""
    state = close_ended_window(state, terms, now)
    if terms.binding_max_changes is None or state.home_point_code == point_code:
        return Decision(Result.OK, state._replace(home_point_code=point_code))
    if state.home_point_code is None:
        return Decision(Result.OK, state._replace(home_point_code=point_code))
    if state.binding_changes >= terms.binding_max_changes:
        return Decision(Result.BINDING_CHANGES_EXHAUSTED, state)
    new = state._replace(home_point_code=point_code, binding_changes=state.binding_changes + 1)
    return Decision(Result.OK, new)


def available_now(
    state: AllowanceState, terms: Terms, point_code: str | None, now: datetime
) -> tuple[int, datetime | None]:
    """The most one redemption of the row at ``point_code`` (None: at the card's home station, any
    station while it has none) would be granted at ``now``, and — when that is nothing — the first
    later instant the ledger knows of at which a redemption would be granted (the minimum gap's end, a
    batch's release), or None (a pump still running, nothing left in the period, no known date).

    Pure, and decided by ``decide.decide_redeem`` itself, so the figure is the ledger's: the bound comes
    from what every debit is held to (the row's ceiling less used and held, the fill cap); within it the
    largest quantity ``decide_redeem`` grants is found by bisection (a refusal that does not depend on
    the quantity — the gap, a pump hold on a rule with a gap or a binding, another station — makes it
    0). The caller checks the card (``card_blocked``) and that the row serves ``now`` (``is_current``).
    """
    window = current_window(state, terms, now)
    point = point_code if point_code is not None else (window.home_point_code or "")
    bound = ceiling_qty(window, terms, now) - window.used_qty - window.held_qty
    if terms.fill_cap_qty is not None:
        bound = min(bound, terms.fill_cap_qty)
    qty = _most_granted(state, terms, point, now, bound)
    if qty > 0:
        return qty, None
    return 0, _next_granted(state, terms, window, point, now)


def _most_granted(state: AllowanceState, terms: Terms, point: str, now: datetime, bound: int) -> int:
    """The largest ``q`` in ``[0, bound]`` that ``decide_redeem`` grants (the granted quantities of one
    moment are ``1..max``: every refusal is either independent of the quantity or an upper bound)."""
    if bound <= 0 or not decide_redeem(state, terms, 1, point, now).ok:
        return 0
    low, high = 1, bound  # low is granted; find the largest granted in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if decide_redeem(state, terms, mid, point, now).ok:
            low = mid
        else:
            high = mid - 1
    return low


def _next_granted(
    state: AllowanceState, terms: Terms, window: AllowanceState, point: str, now: datetime
) -> datetime | None:
    """The first instant after ``now`` at which a redemption would be granted, among those at which the
    ledger's answer changes by the calendar alone: the end of the minimum gap, the end of a running rolling
    window (the next cylinder "every 23 days"), and each batch still to be released (the next regular
    batch, not a catch-up batch the holder, having drawn, cannot use). A calendar period's end is not
    one: the next period is another allowance."""
    instants: set[datetime] = set()
    if terms.min_gap_s is not None and window.last_redeemed_at is not None:
        instants.add(window.last_redeemed_at + timedelta(seconds=terms.min_gap_s))
    if terms.period_kind is PeriodKind.ROLLING and window.period_end is not None:
        instants.add(window.period_end)
    at = now
    while True:  # every batch still to come, in order (``batches.state`` names the next after ``at``)
        nxt = batches.state(terms.batches, window.period_start, at, window.granted_qty, window.used_qty,
                            window.base_qty, window.carried_qty + window.topup_qty).next_release_at
        if nxt is None:
            break
        instants.add(nxt)
        at = nxt
    for instant in sorted(t for t in instants if t > now):
        if is_current(state, terms, instant) and decide_redeem(state, terms, 1, point, instant).ok:
            return instant
    return None
