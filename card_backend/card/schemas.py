"""Card bodies and the holder summary."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from card_backend.family.schemas import NationalIdIn
from card_backend.types import Id


class HolderType(StrEnum):
    FAMILY = "family"
    VEHICLE = "vehicle"


SERIAL = Field(default=None, min_length=4, max_length=32, pattern=r"^[A-Z0-9\-]+$")


class CardIssue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holder_type: HolderType
    holder_id: Id
    serial: str | None = SERIAL


class StateReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=150)


class Replace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str | None = SERIAL


class CitizenLostReport(BaseModel):
    """Minimal form a citizen fills in: the card's serial and the national ID of a member of its family."""

    model_config = ConfigDict(extra="forbid")

    serial: str = Field(min_length=4, max_length=32)
    national_id: NationalIdIn = Field(min_length=11, max_length=11)


class CardOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    serial: str
    holder_type: str
    holder_id: int
    state: str
    state_reason: str
    replaces_id: int | None
    issued_at: datetime
    last_counter: int


class LostReportOut(BaseModel):
    serial: str
    state: str


class FamilyBrief(BaseModel):
    id: int
    book_number: str
    governorate: str
    status: str
    members_alive: int
    head_name_ar: str
    head_name_en: str


class VehicleBrief(BaseModel):
    id: int
    plate: str
    governorate: str
    kind: str
    fuel: str
    engine_cc: int
    model_year: int
    owner_person_id: int
    owner_family_id: int


class ExclusionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    reason: str
    since: date
    until: date | None


class HolderSummary(BaseModel):
    card: CardOut
    holder_type: str
    holder_id: int
    family: FamilyBrief | None = None
    vehicle: VehicleBrief | None = None
    active_card_serial: str | None
    exclusions: list[ExclusionOut]
