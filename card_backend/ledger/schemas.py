"""Request and response bodies of the ledger API (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
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
    id: UUID
    ref_entry_id: Annotated[Code, Field(max_length=36)]
    reason: Annotated[Text, Field(min_length=3, max_length=200)]


class TopupIn(_In):
    id: UUID
    holder_type: Literal["family", "person", "vehicle"]
    holder_id: Id
    product_code: Code
    quantity_qty: PositiveQty
    reason: Annotated[Text, Field(min_length=3, max_length=200)]
    cap_qty: PositiveQty | None = Field(None, description="Bound on the period's top-ups, e.g. 40 L.")


class RebindIn(_In):
    id: UUID = Field(description="Made by the client: a retried request is applied once.")
    holder_type: Literal["family", "person", "vehicle"]
    holder_id: Id
    product_code: Code
    point_code: Code = Field(description="The new home point for this product.")


class DeliveryIn(_In):
    point_code: Code
    product_code: Code
    quantity_qty: PositiveQty
    reference: Annotated[Text, Field(max_length=64)] = ""


class DeliveryOut(BaseModel):
    point_code: str
    product_code: str
    balance_qty: int


class QuotaLineOut(BaseModel):
    product_code: str
    holder_type: str
    holder_id: int
    granted_qty: int
    used_qty: int
    held_qty: int
    remaining_qty: int
    available_now_qty: int
    period_end: datetime | None
    next_possible_at: datetime | None
    home_point_code: str | None


class QuotaOut(BaseModel):
    card_serial: str
    lines: list[QuotaLineOut]


class FindingOut(BaseModel):
    kind: str  # changed, removed, inserted, reordered, unsealed or seal_broken
    seq: int
    entry_id: str | None  # the row now at seq (None when it was removed)
    seal_id: int | None
    detail: str


class VerifyOut(BaseModel):
    ok: bool
    seals_checked: int
    entries_checked: int
    findings: list[FindingOut]


class SealOut(BaseModel):
    seals: int
    entries: int
    last_seq: int | None


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
