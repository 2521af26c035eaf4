"""HTTP for families and persons. Registrars write; supervisors, auditors and clerks read."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.deps import SessionDep, SettingsDep
from card_backend.family import service
from card_backend.family.repository import FamilyRepository
from card_backend.family.schemas import (
    BirthIn,
    DeathIn,
    FamilyCreate,
    FamilyOut,
    FamilySummary,
    FamilyUpdate,
    HeadChangeIn,
    PersonOut,
    SplitIn,
)
from card_backend.types import BIGINT_MAX, Id

router = APIRouter(prefix="/api/v1", tags=["families"])
WRITE = require_roles(Role.REGISTRAR)
READ = require_roles(*READERS)


@router.post("/families", response_model=FamilyOut, status_code=201)
def create_family(
    body: FamilyCreate, session: SessionDep, settings: SettingsDep, who: Principal = Depends(WRITE)
) -> FamilyOut:
    """Register a family with its members (exactly one head); recorded as a ``create`` event."""
    return service.create(session, settings, who.actor, body)


@router.get("/families", response_model=list[FamilySummary])
def list_families(
    session: SessionDep,
    _: Principal = Depends(READ),
    governorate: str | None = None,
    book_number: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=BIGINT_MAX),
) -> list[FamilySummary]:
    rows = FamilyRepository(session).search(
        governorate=governorate, book_number=book_number, limit=limit, offset=offset
    )
    return [FamilySummary.model_validate(f) for f in rows]


@router.get("/families/{family_id}", response_model=FamilyOut)
def get_family(family_id: Id, session: SessionDep, _: Principal = Depends(READ)) -> FamilyOut:
    """The family, its members (alive or not) and its full history, oldest first."""
    return service.view(session, family_id)


@router.patch("/families/{family_id}", response_model=FamilyOut)
def update_family(
    family_id: Id,
    body: FamilyUpdate,
    session: SessionDep,
    settings: SettingsDep,
    who: Principal = Depends(WRITE),
) -> FamilyOut:
    return service.update(session, settings, who.actor, family_id, body)


@router.post("/families/{family_id}/births", response_model=FamilyOut, status_code=201)
def register_birth(
    family_id: Id, body: BirthIn, session: SessionDep, settings: SettingsDep, who: Principal = Depends(WRITE)
) -> FamilyOut:
    return service.birth(session, settings, who.actor, family_id, body.child)


@router.post("/families/{family_id}/deaths", response_model=FamilyOut)
def register_death(
    family_id: Id, body: DeathIn, session: SessionDep, who: Principal = Depends(WRITE)
) -> FamilyOut:
    return service.death(session, who.actor, family_id, body.person_id, body.died_on)


@router.post("/families/{family_id}/splits", response_model=FamilyOut, status_code=201)
def split_family(
    family_id: Id, body: SplitIn, session: SessionDep, settings: SettingsDep, who: Principal = Depends(WRITE)
) -> FamilyOut:
    """A member leaves to found a new family and heads it; answers the NEW family."""
    return service.split(
        session,
        settings,
        who.actor,
        family_id,
        body.person_id,
        body.new_book_number,
        body.governorate,
        body.address,
    )


@router.post("/families/{family_id}/head", response_model=FamilyOut)
def change_head(
    family_id: Id, body: HeadChangeIn, session: SessionDep, who: Principal = Depends(WRITE)
) -> FamilyOut:
    return service.change_head(session, who.actor, family_id, body.person_id, body.old_head_relation)


@router.get("/persons/by-national-id/{national_id}", response_model=PersonOut)
def person_by_national_id(national_id: str, session: SessionDep, _: Principal = Depends(READ)) -> PersonOut:
    return service.person_by_national_id(session, national_id)
