"""Request and response bodies of walk-in sales (pydantic v2)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from card_backend.ledger.schemas import PositiveQty
from card_backend.types import Code


class WalkInSaleIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID = Field(description="Made by the client and stored before sending: the idempotency key.")
    product_code: Code
    quantity_qty: PositiveQty
    point_code: Code


class WalkInCapIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_cap_qty: Annotated[int, Field(ge=0, le=10**12)] = Field(
        description="Most a point may sell of the product in a local day, in the product's smallest unit."
    )
    point_code: Code | None = Field(None, description="This point only; default: every point.")


class WalkInCapOut(BaseModel):
    product_code: str
    point_code: str | None
    daily_cap_qty: int


class WalkInDayOut(BaseModel):
    day: date
    point_code: str
    product_code: str
    sales: int
    sold_qty: int
    price_minor: int
    cap_qty: int


class WalkInSaleOut(BaseModel):
    entry_id: str
    point_code: str
    product_code: str
    quantity_qty: int
    price_minor: int
    actor: str | None
    created_at: datetime


class WalkInReportOut(BaseModel):
    days: list[WalkInDayOut]
    sales: list[WalkInSaleOut]
