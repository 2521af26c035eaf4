"""Vehicle bodies. A vehicle belongs to a registered person; plate + governorate is unique."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from card_backend.family.schemas import NationalIdIn
from card_backend.types import Id


class VehicleKind(StrEnum):
    PRIVATE = "private"
    TAXI = "taxi"
    BUS = "bus"
    TRUCK = "truck"
    MOTORCYCLE = "motorcycle"
    AGRICULTURAL = "agricultural"
    GOVERNMENT = "government"


class Fuel(StrEnum):
    GASOLINE = "gasoline"
    DIESEL = "diesel"


class VehicleCreate(BaseModel):
    """The owner is named by person id or national id (one of them)."""

    model_config = ConfigDict(extra="forbid")

    plate: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9\-]+$")
    governorate: str = Field(min_length=1, max_length=32)
    kind: VehicleKind
    fuel: Fuel
    engine_cc: int = Field(ge=49, le=30000)
    model_year: int = Field(ge=1900, le=2100)
    owner_person_id: Id | None = None
    owner_national_id: NationalIdIn | None = Field(default=None, max_length=20)

    @model_validator(mode="after")
    def _one_owner_key(self) -> VehicleCreate:
        if self.owner_person_id is None and not self.owner_national_id:
            raise ValueError("owner_person_id or owner_national_id is required")
        return self


class VehicleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    plate: str
    governorate: str
    kind: str
    fuel: str
    engine_cc: int
    model_year: int
    owner_person_id: int
