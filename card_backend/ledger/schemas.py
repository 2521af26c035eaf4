"""Request and response bodies of the ledger API (pydantic v2)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from card_backend.types import Code, Id, Text

PositiveQty = Annotated[int, Field(gt=0, le=10**12)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedemptionIn(_In):
    id: UUID = Field(description="Made by the client and stored before sending: the idempotency key.")
    card_serial: Code
    product_code: Code
    quantity_qty: PositiveQty
    point_code: Code


class RedemptionBatchIn(_In):
    items: Annotated[list[RedemptionIn], Field(min_length=1, max_length=1000)]


class OutcomeOut(BaseModel):
    id: str
    result: str
    quantity_qty: int
    remaining_qty: int | None
    price_minor: int
    possible_at: datetime | None = None
    replayed: bool = False


class BatchOut(BaseModel):
    results: list[OutcomeOut]


class HoldIn(RedemptionIn):
    pass


class PostIn(_In):
    quantity_qty: Annotated[int, Field(ge=0, le=10**12)] = Field(description="Dispensed, at most reserved.")


class ReversalIn(_In):
    id: UUID = Field(description="Made by the supervisor's app: the idempotency key. Each partial reversal "
                     "of a debit has its own id. A refused reversal is not stored, so its id may be sent "
                     "again once put right.")
    ref_entry_id: UUID = Field(
        description="The debit to reverse: a redemption's id, or a pump hold's post entry; or a top-up "
                    "granted in error, to withdraw.")
    reason: Annotated[Text, Field(min_length=3, max_length=200)]
    quantity_qty: PositiveQty | None = Field(None, description=(
        "How much of the debit to credit back (e.g. 30 L of a 50 L debit when 20 L were pumped), at most "
        "what earlier reversals of it left; default: all that is left. More than that: 409 "
        "exceeds_reversible; nothing left: 409 already_reversed."))
    if_period_closed: Literal["refuse", "stock_only"] = Field("refuse", description=(
        "What to do when the debit's allowance window has closed (the calendar period ended, the rolling "
        "window ended or restarted): 'refuse' answers 409 period_closed and changes nothing; 'stock_only' "
        "puts the goods back in the point's stock and records the refund owed, without crediting the "
        "family's allowance (its period cannot be drawn any more): 200 stock_credited."))


class ReversalOut(OutcomeOut):
    """A reversal's answer (or, in a refusal's ``detail``, its refusal) with what it means for a
    supervisor or clerk, in Arabic and English."""

    message_ar: str | None = None
    message_en: str | None = None


class TopupIn(_In):
    id: UUID
    holder_type: Literal["family", "person", "vehicle"]
    holder_id: Id
    product_code: Code
    quantity_qty: PositiveQty
    reason: Annotated[Text, Field(min_length=3, max_length=200)]
    cap_qty: PositiveQty | None = Field(None, description=(
        "Bound on the period's top-ups, e.g. 40 L; part of the payload (the same id with another cap is "
        "refused with exists_with_different_payload). The deployment's own bounds apply with or without "
        "it (CARD_TOPUP_MAX_PERCENT, CARD_TOPUP_PERIOD_MAX_PERCENT of the allowance's base quantity)."))


class RebindIn(_In):
    id: UUID = Field(description="Made by the client: a retried request is applied once.")
    holder_type: Literal["family", "person", "vehicle"]
    holder_id: Id
    product_code: Code
    point_code: Code = Field(description="The new home point for this product.")


class DeliveryIn(_In):
    id: UUID = Field(description="Made by the supervisor's app and kept until answered: the idempotency "
                     "key. Resent after a timeout with the same body, the delivery counts once and the "
                     "first answer is replayed; another body under the same id is refused (409 "
                     "``exists_with_different_payload``).")
    point_code: Code = Field(description="An open point that serves the product.")
    product_code: Code
    quantity_qty: PositiveQty
    reference: Annotated[Text, Field(max_length=64)] = Field("", description="The waybill or truck.")


class DeliveryOut(BaseModel):
    id: str
    point_code: str
    product_code: str
    quantity_qty: int
    reference: str
    balance_qty: int | None = Field(description="The point's balance of the product right after this "
                                    "delivery (a replay answers the balance as it was then, not now).")
    delivered_at: datetime | None
    replayed: bool = False


class StockBalanceOut(BaseModel):
    point_code: str
    product_code: str
    delivered_qty: int = Field(description="Running total delivered (the point_stock row).")
    dispensed_qty: int = Field(description="Running total dispensed (the point_stock row).")
    balance_qty: int = Field(description="Balance now: delivered_qty - dispensed_qty.")
    opening_qty: int = Field(description="Balance at the start of day_from.")
    closing_qty: int = Field(description="Balance at the end of day_to.")
    journal_dispensed_qty: int = Field(description="Dispensed according to the journal, all time.")
    recorded_delivered_qty: int = Field(description="Sum of the recorded deliveries, all time.")
    reconciled: bool
    overdrawn: bool = Field(description="The balance now is below zero: more was dispensed than the "
                                        "recorded deliveries brought (a delivery not recorded, or a "
                                        "pump post beyond the books).")


class StockDayOut(BaseModel):
    day: str
    point_code: str
    product_code: str
    tracked: bool = Field(description="False when the point's stock of the product is not counted (no "
                          "delivery ever): opening and closing are then null.")
    opening_qty: int | None
    delivered_qty: int
    dispensed_qty: int
    closing_qty: int | None = Field(description="opening_qty + delivered_qty - dispensed_qty.")


class StockDisagreementOut(BaseModel):
    point_code: str
    product_code: str
    delivered_qty: int
    recorded_delivered_qty: int
    dispensed_qty: int
    journal_dispensed_qty: int


class StockReportOut(BaseModel):
    day_from: date
    day_to: date
    reconciled: bool = Field(description="Every running row agrees with the deliveries and the journal.")
    disagreements: list[StockDisagreementOut]
    balances: list[StockBalanceOut]
    days: list[StockDayOut] = Field(description="Per local day (CARD_TIMEZONE) with a movement, by day, "
                                    "point and product; a day without one keeps the previous closing "
                                    "balance.")


class QuotaLineOut(BaseModel):
    product_code: str
    holder_type: str
    holder_id: int
    granted_qty: int
    used_qty: int
    held_qty: int
    remaining_qty: int = Field(description="What the period (or rolling window) has left: granted less "
                               "used and held.")
    available_now_qty: int = Field(description="The most one redemption would be granted at this moment "
                                   "(at the card's home station; in a tap's answer, at the tapping point): "
                                   "0 while the minimum gap runs, a pump hold is pending on a rule with a "
                                   "gap or a station binding, the batches released so far are drawn, or "
                                   "the card is not active; never more than the fill cap. The offline "
                                   "ceiling is a share of it.")
    period_end: datetime | None
    next_possible_at: datetime | None = Field(description="When nothing is available now: the first time "
                                              "the ledger knows a redemption would be granted (the minimum "
                                              "gap's end, the next batch's release); null if none is known.")
    home_point_code: str | None
    card_state: str = Field("active", description="The card's state: active, blocked, lost or replaced. A "
                            "card that is not active keeps its lines (a replacement card draws on the same "
                            "allowances) but every redemption with it is card_blocked: nothing is available "
                            "now.")
    card_state_reason: str | None = Field(None, description="Why the card is not active, as recorded "
                                          "when it was blocked or reported lost; null for an active card.")


class QuotaOut(BaseModel):
    card_serial: str
    lines: list[QuotaLineOut]


class FindingOut(BaseModel):
    # changed, removed, inserted, reordered, unsealed, seal_broken, anchor_missing or anchor_mismatch
    kind: str
    seq: int  # 0 for anchor_missing
    entry_id: str | None  # the row now at seq (None when it was removed)
    seal_id: int | None
    detail: str


class ChainHeadOut(BaseModel):
    seal_id: int
    last_seq: int
    seal_hash: str
    anchor: str = Field(description="``ID:HASH``: keep it outside the database and pass it as ``anchor`` "
                                    "to a later verification (docs/operations.md).")


class VerifyOut(BaseModel):
    ok: bool
    seals_checked: int
    entries_checked: int
    findings: list[FindingOut]
    head: ChainHeadOut | None = Field(description="The newest seal verified (null: nothing sealed yet).")
    anchors_checked: int = Field(description="How many anchors the chain was checked against.")


class DiscrepancyOut(BaseModel):
    kind: str  # used_mismatch, held_mismatch, overdrawn, allowance_missing or window_moved
    allowance_id: int
    holder_type: str
    holder_id: int
    product_code: str
    period_start: datetime
    granted_qty: int
    used_qty: int
    held_qty: int
    journal_used_qty: int  # what the journal's ok redemptions, posts and reversals of the window sum to
    pending_held_qty: int  # what the row's pending holds reserve
    journal_window_start: datetime | None = None  # window_moved: where the journal's window starts
    row_exists: bool = True  # False for allowance_missing: the journal's debits point at no row
    detail: str


class ReconcileOut(BaseModel):
    ok: bool
    allowances_checked: int
    truncated: bool  # more rows disagree than listed: raise ``limit``
    findings: list[DiscrepancyOut]


class SealOut(BaseModel):
    seals: int
    entries: int
    last_seq: int | None
    anchor: str | None = Field(default=None, description="``ID:HASH`` of the newest seal made (each new "
                                                         "seal is also logged).")


class DrawOut(BaseModel):
    seq: int
    entry_id: str
    kind: str
    product_code: str | None
    quantity_qty: int
    point_code: str | None
    card_serial: str | None
    card_holder_type: str | None
    card_holder_id: int | None
    remaining_qty: int | None
    created_at: datetime
