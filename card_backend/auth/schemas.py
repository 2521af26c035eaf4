from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from card_backend.auth.principal import Role
from card_backend.types import Id


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    role: Role


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-zA-Z0-9_.\-]+$")
    password: str = Field(min_length=10, max_length=200)
    role: Role
    point_id: Id | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: Role
    point_id: int | None
    active: bool


class Me(BaseModel):
    kind: str
    name: str
    role: Role
    point_id: int | None
