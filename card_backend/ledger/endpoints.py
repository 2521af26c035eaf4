"""Ledger HTTP: redemptions (single and batch), holds, reversals, top-ups, stock, quota, journal.

HTTP only. Redemptions go through the group commit engine and are answered after their group has
committed; the endpoint is ``async`` so a waiting redemption holds no worker thread. A refusal is a
409 ``{"error": <result>, "detail": <stored answer>}``; a batch answers 200 with a result per item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request

from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.errors import DomainError, InvalidInput, NotFound
from card_backend.ledger.errors import HoldUnknown, LedgerBusy, LedgerRefused, WrongPoint
from card_backend.ledger.messages import reversal_message
from card_backend.ledger.schemas import (
    BatchOut,
    ChainHeadOut,
    DeliveryIn,
    DeliveryOut,
    DiscrepancyOut,
    DrawOut,
    FindingOut,
    HoldIn,
    OutcomeOut,
    PostIn,
    QuotaLineOut,
    QuotaOut,
    RebindIn,
    ReconcileOut,
    RedemptionBatchIn,
    RedemptionIn,
    ReversalIn,
    ReversalOut,
    SealOut,
    StockReportOut,
    TopupIn,
    VerifyOut,
)
from card_backend.observability import REDEMPTIONS
from card_backend.types import Id
from quota.domain.chain import Anchor
from quota.domain.stock import DeliveryResult
from quota.engine import EngineBusy, GroupCommitEngine
from quota.ledger_repository import point_code_of
from quota.redemption import Outcome, Redemption, RuleTerms
from quota.service import LedgerService


@asynccontextmanager
async def _ledger_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On shutdown, let the engine finish the queued redemptions and close its connections."""
    yield
    ledger: LedgerService | None = getattr(app.state, "ledger", None)
    if ledger is not None and ledger.engine is not None:
        await asyncio.to_thread(ledger.engine.stop)


router = APIRouter(prefix="/api/v1", tags=["ledger"], lifespan=_ledger_lifespan)
_create_lock = threading.Lock()

Redeemer = Annotated[Principal, Depends(require_roles(Role.DEVICE, Role.CLERK, admin=False))]
# Reversal advice comes from the reader agent only: a clerk who handed goods over must not be able to
# credit the family back by saying they were not (every advice is journalled with the device's name).
Agent = Annotated[Principal, Depends(require_roles(Role.DEVICE))]
Supervisor = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR))]
# A home station is moved by a registrar or a supervisor (and an administrator), never by a station: a
# clerk or device could otherwise pull any holder to its own point without the card, using up the
# holder's changes so the family cannot move back.
Binder = Annotated[Principal, Depends(require_roles(Role.REGISTRAR, Role.SUPERVISOR))]
Granter = Annotated[Principal, Depends(require_roles(Role.REGISTRAR))]
Auditor = Annotated[Principal, Depends(require_roles(Role.AUDITOR))]
Reader = Annotated[Principal, Depends(require_roles(*READERS))]
QuotaReader = Annotated[Principal, Depends(require_roles(*READERS, Role.DEVICE))]


async def get_ledger(request: Request) -> LedgerService:
    """One ledger per app; its group commit engine starts with the first redemption."""
    ledger: LedgerService | None = getattr(request.app.state, "ledger", None)
    if ledger is None:
        with _create_lock:
            ledger = getattr(request.app.state, "ledger", None)
            if ledger is None:
                settings = request.app.state.settings
                db = request.app.state.engine
                terms = RuleTerms()
                engine = GroupCommitEngine(db, terms, max_items=settings.group_max_items,
                                           writers=settings.group_writers,
                                           max_wait_ms=settings.group_max_wait_ms)
                ledger = LedgerService(db, terms, engine, hold_ttl_s=settings.hold_ttl_s,
                                       topup_max_percent=settings.topup_max_percent,
                                       topup_period_max_percent=settings.topup_period_max_percent,
                                       advice_max_age_s=settings.undelivered_advice_max_hours * 3600
                                       or None)
                request.app.state.ledger = ledger
    return ledger


LedgerDep = Annotated[LedgerService, Depends(get_ledger)]


def _out(outcome: Outcome) -> OutcomeOut:
    if not outcome.replayed:
        REDEMPTIONS.labels(outcome.result).inc()
    return OutcomeOut(id=outcome.entry_id, result=outcome.result, quantity_qty=outcome.quantity_qty,
                      remaining_qty=outcome.remaining_qty, price_minor=outcome.price_minor,
                      possible_at=outcome.possible_at, replayed=outcome.replayed)


def _answer(outcome: Outcome) -> OutcomeOut:
    if outcome.result == "hold_unknown":
        raise HoldUnknown("no such hold")
    out = _out(outcome)
    if not outcome.ok:
        raise LedgerRefused(out.model_dump(mode="json"), code=outcome.result)
    return out


def _own_point(ledger: LedgerService, principal: Principal) -> str | None:
    """The point a device or clerk belongs to; None for staff tied to no point."""
    if principal.point_id is None:
        return None
    if principal.point_code is not None:  # devices carry it; a clerk's token carries only the point id
        return principal.point_code
    with ledger.db.connect() as conn:
        return point_code_of(conn, principal.point_id)


def _check_point(ledger: LedgerService, principal: Principal, point_codes: set[str]) -> None:
    """A device, clerk or supervisor tied to a point acts at that point only."""
    if principal.point_id is None:
        return
    own = _own_point(ledger, principal)
    if point_codes - {own}:
        raise WrongPoint(f"this {principal.kind} belongs to point {own}")


def _redemption(body: RedemptionIn) -> Redemption:
    return Redemption(str(body.id), body.card_serial, body.product_code, body.quantity_qty, body.point_code)


@router.post("/redemptions", response_model=OutcomeOut,
             responses={409: {"description": "refused: error is the result code"}})
async def redeem(body: RedemptionIn, principal: Redeemer, ledger: LedgerDep) -> OutcomeOut:
    """Debit a card's allowance at a point; the same id and payload replays the first answer."""
    _check_point(ledger, principal, {body.point_code})
    try:
        outcome = await ledger.group_engine().redeem_async(_redemption(body))
    except EngineBusy as exc:
        raise LedgerBusy("too many redemptions in flight; retry with the same id") from exc
    return _answer(outcome)


@router.post("/redemptions/batch", response_model=BatchOut)
async def redeem_batch(body: RedemptionBatchIn, principal: Redeemer, ledger: LedgerDep) -> BatchOut:
    """Several redemptions (e.g. an agent's outbox after an outage): one result per item, in order."""
    _check_point(ledger, principal, {item.point_code for item in body.items})
    try:
        outcomes = await ledger.group_engine().redeem_many_async([_redemption(i) for i in body.items])
    except EngineBusy as exc:
        raise LedgerBusy("too many redemptions in flight; retry with the same ids") from exc
    return BatchOut(results=[_out(o) for o in outcomes])


@router.get("/cards/{serial}/quota", response_model=QuotaOut)
def card_quota(serial: str, _: QuotaReader, ledger: LedgerDep) -> QuotaOut:
    """What the card may still draw per product, with the period end and the next possible time."""
    lines = ledger.quota_for_card(serial)
    if lines is None:
        raise NotFound("no such card", code="card_unknown")
    return QuotaOut(card_serial=serial, lines=[QuotaLineOut.model_validate(line, from_attributes=True)
                                               for line in lines])


@router.post("/holds", response_model=OutcomeOut)
def hold(body: HoldIn, principal: Redeemer, ledger: LedgerDep) -> OutcomeOut:
    """Reserve an estimate before the pump starts; post the dispensed quantity or void it."""
    _check_point(ledger, principal, {body.point_code})
    return _answer(ledger.hold(str(body.id), body.card_serial, body.product_code, body.quantity_qty,
                               body.point_code))


def _settled(outcome: Outcome, hold_id: str, principal: Principal) -> OutcomeOut:
    if outcome.result == "wrong_point":
        raise WrongPoint(f"hold {hold_id} was not reserved at this {principal.kind}'s point")
    return _answer(outcome)


@router.post("/holds/{hold_id}/post", response_model=OutcomeOut, responses={
    409: {"description": "refused: exceeds_hold, invalid_quantity (not stored: the right figure may "
                         "follow), hold_expired, hold_not_pending"}})
def post_hold(hold_id: UUID, body: PostIn, principal: Redeemer, ledger: LedgerDep) -> OutcomeOut:
    """Post what the pump dispensed; only the hold's own point (a device or clerk tied to it) may.

    Ids in the path are UUIDs in any spelling, read as the reservation's body read its id."""
    held = str(hold_id)
    return _settled(ledger.post(held, body.quantity_qty, point=_own_point(ledger, principal)), held,
                    principal)


@router.post("/holds/{hold_id}/void", response_model=OutcomeOut)
def void_hold(hold_id: UUID, principal: Redeemer, ledger: LedgerDep) -> OutcomeOut:
    """Void a hold (nothing dispensed); only the hold's own point may."""
    held = str(hold_id)
    return _settled(ledger.void(held, point=_own_point(ledger, principal)), held, principal)


def _reversal_answer(outcome: Outcome,
                     answered: frozenset[str] = frozenset({"stock_credited", "topup_withdrawn"})
                     ) -> ReversalOut:
    """A reversal's answer with its meaning in Arabic and English: 200 for ``ok`` and the ``answered``
    results, 404 ``entry_not_found``, else a 409 whose ``detail`` carries the same fields and messages."""
    message_ar, message_en = reversal_message(outcome.result)
    answer = ReversalOut(**_out(outcome).model_dump(), message_ar=message_ar, message_en=message_en)
    if outcome.result == "entry_not_found":
        raise NotFound(answer.model_dump(mode="json"), code=outcome.result)
    if not outcome.ok and outcome.result not in answered:
        raise LedgerRefused(answer.model_dump(mode="json"), code=outcome.result)
    return answer


@router.post("/reversals", response_model=ReversalOut, responses={
    404: {"description": "entry_not_found: no journal entry has ref_entry_id"},
    409: {"description": "refused, nothing changed (the id may be sent again): period_closed, "
                         "already_reversed, exceeds_reversible, entry_not_reversible, "
                         "exceeds_allowance (a top-up's part already drawn), "
                         "exists_with_different_payload"}})
def reverse(body: ReversalIn, principal: Supervisor, ledger: LedgerDep) -> ReversalOut:
    """A supervisor's correction with a reason: a new crediting entry, nothing edited.

    ``quantity_qty`` credits back part of a debit (a station that pumped 20 L and debited 50 L: reverse
    30 L); a debit may be reversed in several parts, each under its own id, until none is left. The
    family's allowance, the point's stock and the money follow the quantity; the refund (``price_minor``,
    negative) is what the price tiers charge for the top slice of the period's use, so what the family
    paid net always matches the tiers. Reversing all that is left of the latest fill also gives back its
    minimum gap and, if it first tied the card to the station, the binding.

    A debit whose allowance period has ended (calendar period over, rolling window ended or restarted)
    is not credited to the family: 409 ``period_closed``, nothing changed — unless ``if_period_closed``
    is ``stock_only``: then 200 ``stock_credited``, the point's stock gets the goods back, the refund
    owed is recorded, the allowance is untouched. Every answer carries ``message_ar`` / ``message_en``.
    A supervisor tied to a point corrects that point's debits only (403 ``wrong_point``).

    ``ref_entry_id`` may also be a top-up granted in error: 200 ``topup_withdrawn`` takes back (a part of)
    it from the family's allowance, journalled as a ``withdrawal``, while its window runs and only as
    much as the family has not drawn (409 ``exceeds_allowance`` with ``remaining_qty``; 409
    ``period_closed`` once the window has ended). Top-ups are tied to no point, so only a supervisor
    tied to none withdraws them."""
    own = _own_point(ledger, principal)  # a supervisor tied to a point corrects that point's debits only
    outcome = ledger.reverse(str(body.id), str(body.ref_entry_id), body.reason, principal.actor,
                             quantity_qty=body.quantity_qty,
                             stock_only_if_closed=body.if_period_closed == "stock_only", point=own)
    if outcome.result == "wrong_point":
        raise WrongPoint(f"debit {body.ref_entry_id} was not made at point {own}")
    return _reversal_answer(outcome)


@router.post("/redemptions/{entry_id}/undelivered", response_model=ReversalOut,
             responses={409: {"description": "refused: not_debited, advice_too_late (more than "
                                             "CARD_UNDELIVERED_ADVICE_MAX_HOURS after the debit)"}})
def undelivered(debit_id: Annotated[UUID, Path(alias="entry_id")], principal: Agent,
                ledger: LedgerDep) -> ReversalOut:
    """Reversal advice from the point that sent a debit, never learnt its answer and handed nothing over
    (the reader agent sends it when the answer was lost and the card's offline ceiling then refused).
    Applied, what is left of the debit is credited back (``ok``, a reversal journalled under an id
    derived from the debit's; ``already_reversed`` if a supervisor reversed it all); if the debit's
    allowance period has ended meanwhile, the stock-only correction is made (``stock_credited``: the
    goods back in the point's stock, the refund recorded, the family's allowance not credited); never
    applied, its id is voided (``voided``) so a late arrival cannot debit. Idempotent; only a point's
    own reader agents (devices) advise, and only on that point's debits."""
    point = _own_point(ledger, principal)
    if point is None:
        raise WrongPoint(f"this {principal.kind} belongs to no point")
    entry_id = str(debit_id)  # as the redemption's body read it: an upper-case spelling is the same id
    outcome = ledger.undelivered(entry_id, point, principal.actor)
    if outcome.result == "wrong_point":
        raise WrongPoint(f"debit {entry_id} was not made at point {point}")
    return _reversal_answer(outcome, frozenset({"voided", "already_reversed", "stock_credited"}))


@router.post("/topups", response_model=OutcomeOut,
             responses={409: {"description": "refused: exceeds_allowance, not_eligible, "
                                             "exists_with_different_payload"}})
def topup(body: TopupIn, principal: Granter, ledger: LedgerDep) -> OutcomeOut:
    """A one-off extra grant with a reason (registrar or administrator), journalled as ``topup``.

    Bounded per allowance by the deployment (``CARD_TOPUP_MAX_PERCENT`` of the base quantity at once,
    ``CARD_TOPUP_PERIOD_MAX_PERCENT`` for the period's top-ups) and by ``cap_qty`` when tighter: beyond,
    409 ``exceeds_allowance``. ``cap_qty`` is part of the payload for the id's idempotency."""
    return _answer(ledger.topup(str(body.id), body.holder_type, body.holder_id, body.product_code,
                                body.quantity_qty, body.reason, principal.actor, body.cap_qty))


@router.post("/bindings", response_model=OutcomeOut,
             responses={409: {"description": "refused: binding_changes_exhausted, not_eligible, ..."}})
def rebind(body: RebindIn, principal: Binder, ledger: LedgerDep) -> OutcomeOut:
    """Move a holder's home point for a product: a registrar or supervisor (a supervisor tied to a point,
    to that point), not a clerk or device. Changes are counted per period and refused beyond the rule's
    limit."""
    _check_point(ledger, principal, {body.point_code})
    return _answer(ledger.rebind(str(body.id), body.holder_type, body.holder_id, body.product_code,
                                 body.point_code, principal.actor))


_DELIVERY_REFUSALS: dict[DeliveryResult, tuple[type[DomainError], str]] = {
    DeliveryResult.POINT_UNKNOWN: (InvalidInput, "no such point"),
    DeliveryResult.PRODUCT_UNKNOWN: (InvalidInput, "no such product"),
    DeliveryResult.POINT_INACTIVE: (LedgerRefused, "the point is closed"),
    DeliveryResult.PRODUCT_NOT_SERVED: (LedgerRefused, "the point does not serve this product"),
    DeliveryResult.EXISTS_WITH_DIFFERENT_PAYLOAD: (LedgerRefused, "this id was used for another delivery"),
}
MAX_STOCK_REPORT_DAYS = 366


@router.post("/stock/deliveries", response_model=DeliveryOut, status_code=201, responses={
    409: {"description": "refused, nothing recorded: point_inactive, product_not_served, "
                         "exists_with_different_payload"},
    422: {"description": "refused, nothing recorded: point_unknown, product_unknown, validation_error"}})
def deliver(body: DeliveryIn, principal: Supervisor, ledger: LedgerDep) -> DeliveryOut:
    """Record goods received at a point. ``id`` is the idempotency key: the app makes it once per delivery
    and resends it with the same body until it gets an answer; a resent delivery counts once and answers
    201 with the first answer (``balance_qty`` as it was then) and ``replayed: true``. A refusal records
    nothing, so the same id may be sent again once the point or product is put right. A supervisor tied
    to a point records deliveries to that point only (403 ``wrong_point``)."""
    _check_point(ledger, principal, {body.point_code})
    delivery = ledger.deliver_stock(str(body.id), body.point_code, body.product_code, body.quantity_qty,
                                    body.reference)
    if not delivery.ok:
        error, message = _DELIVERY_REFUSALS[delivery.result]
        raise error(message, code=delivery.result.value)
    payload = delivery.payload
    return DeliveryOut(id=delivery.delivery_id, point_code=payload.point_code,
                       product_code=payload.product_code, quantity_qty=payload.quantity_qty,
                       reference=payload.reference, balance_qty=delivery.balance_qty,
                       delivered_at=delivery.delivered_at, replayed=delivery.replayed)


@router.get("/stock/report", response_model=StockReportOut)
def stock_report(request: Request, _: Reader, ledger: LedgerDep, day_from: date, day_to: date,
                 point_code: Annotated[str | None, Query(max_length=32)] = None) -> StockReportOut:
    """Point stock for one point or all, over local days (``CARD_TIMEZONE``) ``day_from``..``day_to`` (at
    most 366): per point and product the balance now and the opening and closing balances of the range;
    per day with a movement, opening, delivered, dispensed and closing; and the reconciliation of the
    running counters against the deliveries and the journal, naming the pairs that disagree."""
    if day_to < day_from or (day_to - day_from).days >= MAX_STOCK_REPORT_DAYS:
        raise InvalidInput(f"day_to must be 0 to {MAX_STOCK_REPORT_DAYS - 1} days after day_from",
                           code="bad_range")
    zone = request.app.state.settings.zone
    return StockReportOut.model_validate(ledger.stock_report(point_code, day_from, day_to, zone))


@router.get("/families/{family_id}/draws", response_model=list[DrawOut])
def family_draws(family_id: Id, _: Reader, ledger: LedgerDep) -> list[DrawOut]:
    """Partial draw: which member's card drew what, where and when from the family allowance."""
    return [DrawOut.model_validate(d) for d in ledger.family_draws(family_id)]


MAX_ANCHORS = 100


@router.get("/journal/verify", response_model=VerifyOut)
def verify(_: Auditor, ledger: LedgerDep,
           anchor: Annotated[list[str] | None, Query(
               description="``ID:HASH`` of a seal kept outside the database (a ``head.anchor`` of an "
                           "earlier verification, or a line of the seal log); repeat for several. The "
                           "chain must still hold each seal with exactly that hash.")] = None) -> VerifyOut:
    """Recompute the seal chain; every changed, removed, inserted, reordered or unsealed entry is named,
    and every anchor the chain no longer holds (``anchor_missing``) or holds with another hash
    (``anchor_mismatch``). ``head`` is the newest seal verified: keep its ``anchor`` outside the database,
    since removing the newest seals with their entries leaves a shorter chain that verifies."""
    texts = anchor or []
    if len(texts) > MAX_ANCHORS:
        raise InvalidInput(f"at most {MAX_ANCHORS} anchors", code="bad_anchor")
    try:
        anchors = [Anchor.parse(a) for a in texts]
    except ValueError as exc:
        raise InvalidInput(str(exc), code="bad_anchor") from exc
    report = ledger.verify(anchors)
    h = report.head
    head = None if h is None else ChainHeadOut(seal_id=h.seal_id, last_seq=h.last_seq, seal_hash=h.seal_hash,
                                               anchor=h.anchor)
    return VerifyOut(ok=report.ok, seals_checked=report.seals_checked, entries_checked=report.entries_checked,
                     findings=[FindingOut(kind=f.kind, seq=f.seq, entry_id=f.entry_id, seal_id=f.seal_id,
                                          detail=f.detail) for f in report.findings],
                     head=head, anchors_checked=report.anchors_checked)


@router.get("/journal/reconcile", response_model=ReconcileOut)
def reconcile(_: Auditor, ledger: LedgerDep,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> ReconcileOut:
    """Check every allowance row against the journal and the pending holds (invariants 1 and 2): each row
    whose ``used`` the journal's entries of its window do not sum to, whose ``held`` its pending holds do
    not explain, or that is overdrawn, is named with both figures — what an edit of the row by SQL would
    leave (the sealed journal itself is checked by ``/journal/verify``). Reads the whole journal: an
    auditor's request, not a clerk's."""
    report = ledger.reconcile(limit)
    return ReconcileOut(
        ok=report.ok, allowances_checked=report.allowances_checked, truncated=report.truncated,
        findings=[DiscrepancyOut(kind=d.kind, detail=d.detail, **d.figures._asdict())
                  for d in report.findings])


@router.post("/journal/seal", response_model=SealOut)
def seal(_: Auditor, ledger: LedgerDep) -> SealOut:
    """Seal every committed, unsealed entry into the hash chain (normally a periodic job); each new seal
    is logged, and ``anchor`` is the newest one's ``ID:HASH``."""
    seals = ledger.seal(datetime.now(UTC))
    return SealOut(seals=len(seals), entries=sum(s.entry_count for s in seals),
                   last_seq=seals[-1].last_seq if seals else None,
                   anchor=f"{seals[-1].id}:{seals[-1].seal_hash}" if seals else None)
