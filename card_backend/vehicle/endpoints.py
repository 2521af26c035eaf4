"""HTTP for vehicles. Registrars write; other staff read."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.deps import SessionDep, SettingsDep
from card_backend.types import Id
from card_backend.vehicle import service
from card_backend.vehicle.schemas import VehicleCreate, VehicleOut

router = APIRouter(prefix="/api/v1", tags=["vehicles"])


@router.post("/vehicles", response_model=VehicleOut, status_code=201)
def create_vehicle(
    body: VehicleCreate,
    session: SessionDep,
    settings: SettingsDep,
    _: Principal = Depends(require_roles(Role.REGISTRAR)),
) -> VehicleOut:
    """Register a vehicle; the owner must be a registered person (``vehicle_without_owner``)."""
    return service.create(session, settings, body)


@router.get("/vehicles/{vehicle_id}", response_model=VehicleOut)
def get_vehicle(
    vehicle_id: Id, session: SessionDep, _: Principal = Depends(require_roles(*READERS))
) -> VehicleOut:
    return service.get(session, vehicle_id)


@router.get("/persons/{person_id}/vehicles", response_model=list[VehicleOut])
def vehicles_of_person(
    person_id: Id, session: SessionDep, _: Principal = Depends(require_roles(*READERS))
) -> list[VehicleOut]:
    return service.of_owner(session, person_id)
