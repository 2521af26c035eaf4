"""Distribution point and device bodies."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class PointKind(StrEnum):
    FUEL_STATION = "fuel_station"
    GAS_DEPOT = "gas_depot"
    STATE_OUTLET = "state_outlet"
    BAKERY = "bakery"


# What each kind of point usually serves (seed and documentation; the rules define the products).
KIND_PRODUCTS: dict[PointKind, tuple[str, ...]] = {
    PointKind.FUEL_STATION: ("gasoline", "diesel_heating"),
    PointKind.GAS_DEPOT: ("gas_cylinder",),
    PointKind.STATE_OUTLET: ("sugar", "rice", "tea"),
    PointKind.BAKERY: ("bread",),
}

ProductCode = str
_PRODUCTS: list[str] = Field(default_factory=list, max_length=30)


class PointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=2, max_length=32, pattern=r"^[A-Z0-9\-_]+$")
    name_ar: str = Field(min_length=1, max_length=120)
    name_en: str = Field(default="", max_length=120)
    kind: PointKind
    governorate: str = Field(min_length=1, max_length=32)
    products: list[ProductCode] = _PRODUCTS


class PointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_ar: str | None = Field(default=None, min_length=1, max_length=120)
    name_en: str | None = Field(default=None, max_length=120)
    products: list[ProductCode] | None = Field(default=None, max_length=30)
    active: bool | None = None


class PointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name_ar: str
    name_en: str
    kind: str
    governorate: str
    products: list[str]
    active: bool


class DeviceEnroll(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    point_id: int
    name: str
    created_at: datetime
    revoked_at: datetime | None


class DeviceEnrolled(DeviceOut):
    """The only answer that ever contains the token: only its SHA-256 is stored."""

    token: str
