"""Request and response bodies of the family registry."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from card_backend import nationalid
from card_backend.types import Id

# A national ID as typed: Arabic-Indic digits become ASCII before the rule (nationalid.py) is checked.
NationalIdIn = Annotated[str, BeforeValidator(lambda v: nationalid.normalise(v) if isinstance(v, str) else v)]


class Sex(StrEnum):
    M = "M"
    F = "F"


class Relation(StrEnum):
    HEAD = "head"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    OTHER = "other"


class EventKind(StrEnum):
    CREATE = "create"
    BIRTH = "birth"
    DEATH = "death"
    SPLIT = "split"
    HEAD_CHANGE = "head_change"
    UPDATE = "update"


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    national_id: NationalIdIn = Field(min_length=1, max_length=20, examples=["01000000018"])
    first_name_ar: str = Field(min_length=1, max_length=60)
    last_name_ar: str = Field(min_length=1, max_length=60)
    first_name_en: str = Field(default="", max_length=60)
    last_name_en: str = Field(default="", max_length=60)
    birth_date: date
    sex: Sex
    relation: Relation


class FamilyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    book_number: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9\-/]+$")
    governorate: str = Field(min_length=1, max_length=32)
    address: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=120)
    members: list[PersonIn] = Field(min_length=1, max_length=40)


class FamilyUpdate(BaseModel):
    """Address and contact changes; each is recorded as an ``update`` event with old and new values."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(default=None, max_length=200)
    governorate: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=20)
    email: str | None = Field(default=None, max_length=120)


class BirthIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    child: PersonIn


class DeathIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: Id
    died_on: date


class SplitIn(BaseModel):
    """A member leaves (usually on marriage) to found a new family, of which they become the head."""

    model_config = ConfigDict(extra="forbid")

    person_id: Id
    new_book_number: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9\-/]+$")
    governorate: str | None = Field(default=None, max_length=32, description="default: the old family's")
    address: str = Field(default="", max_length=200)


class HeadChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: Id
    old_head_relation: Relation = Field(default=Relation.OTHER, description="what the former head becomes")


class PersonOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    national_id: str
    family_id: int
    first_name_ar: str
    last_name_ar: str
    first_name_en: str
    last_name_en: str
    birth_date: date
    sex: str
    relation: str
    alive: bool
    died_on: date | None


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    actor: str
    at: datetime
    old: dict[str, Any] | None
    new: dict[str, Any] | None


class FamilyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    book_number: str
    governorate: str
    address: str
    head_person_id: int | None
    status: str
    phone: str | None
    email: str | None
    members: list[PersonOut] = []
    history: list[EventOut] = []


class FamilySummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    book_number: str
    governorate: str
    status: str
    head_person_id: int | None
