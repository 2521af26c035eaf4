"""Who is calling: a staff user (JWT) or an enrolled device (token), and the role checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    REGISTRAR = "registrar"
    SUPERVISOR = "supervisor"
    CLERK = "clerk"
    AUDITOR = "auditor"
    DEVICE = "device"


STAFF_ROLES = frozenset({Role.ADMIN, Role.REGISTRAR, Role.SUPERVISOR, Role.CLERK, Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "user" | "device"
    name: str
    role: Role
    point_id: int | None = None
    device_id: int | None = None
    point_code: str | None = None

    @property
    def actor(self) -> str:
        """How the principal is written into histories and the journal."""
        return f"{self.kind}:{self.name}"
