"""HTTP for driving licences and their state as of a date."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Query

from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.deps import SessionDep
from card_backend.licence import service
from card_backend.licence.schemas import LicenceCreate, LicenceOut, StateChange, StateOnOut
from card_backend.types import Id

router = APIRouter(prefix="/api/v1", tags=["licences"])
WRITE = require_roles(Role.REGISTRAR)
READ = require_roles(*READERS)


@router.post("/licences", response_model=LicenceOut, status_code=201)
def create_licence(body: LicenceCreate, session: SessionDep, _: Principal = Depends(WRITE)) -> LicenceOut:
    """Issue a licence; it is ``valid`` from ``issued_on``."""
    return service.create(session, body)


@router.get("/licences/{licence_id}", response_model=LicenceOut)
def get_licence(licence_id: Id, session: SessionDep, _: Principal = Depends(READ)) -> LicenceOut:
    return service.view(session, licence_id)


@router.post("/licences/{licence_id}/states", response_model=LicenceOut, status_code=201)
def change_licence_state(
    licence_id: Id, body: StateChange, session: SessionDep, _: Principal = Depends(WRITE)
) -> LicenceOut:
    """Suspend, reinstate or revoke from a date (revocation is final; no back-dating before the last)."""
    return service.change_state(session, licence_id, body)


@router.get("/licences/{licence_id}/state", response_model=StateOnOut)
def licence_state_on(
    licence_id: Id,
    session: SessionDep,
    _: Principal = Depends(READ),
    on: date = Query(default_factory=date.today, description="the date asked about (default today)"),
) -> StateOnOut:
    """valid | suspended | revoked | expired (after expires_on) | not_issued (before issued_on)."""
    return service.state_on(session, licence_id, on)


@router.get("/persons/{person_id}/licences", response_model=list[LicenceOut])
def licences_of_person(person_id: Id, session: SessionDep, _: Principal = Depends(READ)) -> list[LicenceOut]:
    return service.of_person(session, person_id)
