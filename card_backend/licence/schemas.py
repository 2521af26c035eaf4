"""Driving licence bodies."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from card_backend.types import Id


class LicenceStateName(StrEnum):
    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class LicenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: Id
    number: str = Field(min_length=1, max_length=20, pattern=r"^[A-Za-z0-9\-/]+$")
    categories: str = Field(min_length=1, max_length=32, examples=["B", "A,B", "C,D"])
    issued_on: date
    expires_on: date

    @model_validator(mode="after")
    def _dates(self) -> LicenceCreate:
        if self.expires_on <= self.issued_on:
            raise ValueError("expires_on must be after issued_on")
        return self


class StateChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: LicenceStateName
    reason: str = Field(min_length=1, max_length=200)
    effective_on: date


class StateEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    state: str
    reason: str
    effective_on: date


class LicenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    person_id: int
    number: str
    categories: str
    issued_on: date
    expires_on: date
    history: list[StateEntryOut] = []


class StateOnOut(BaseModel):
    licence_id: int
    on: date
    state: str
    reason: str
    since: date | None
