"""Bodies of offline sync and the conflicts list."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from card_backend.cardauth.schemas import SignedRedemptionIn
from card_backend.types import Moment


class OfflineRedemptionIn(SignedRedemptionIn):
    happened_at: Moment | None = Field(None, description="When the point served it (agent clock).")


class SyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: Annotated[list[OfflineRedemptionIn], Field(min_length=1, max_length=500)]


class SyncItemOut(BaseModel):
    id: str
    status: Literal["posted", "conflict", "rejected"]
    result: str
    quantity_qty: int = 0
    remaining_qty: int | None = None
    quantity_at_risk_qty: int = 0


class SyncOut(BaseModel):
    results: list[SyncItemOut]


class ConflictOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    redemption_id: str
    card_serial: str
    holder_type: str | None
    holder_id: int | None
    product_code: str
    point_code: str
    device_id: int
    quantity_at_risk_qty: int
    reason: str
    happened_at: datetime | None
    created_at: datetime
