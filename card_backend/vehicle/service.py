"""Vehicle use cases: a vehicle needs a registered owner and a plate unique in its governorate."""

from __future__ import annotations

from sqlalchemy.orm import Session

from card_backend import governorates
from card_backend.config import Settings
from card_backend.errors import DuplicateVehicle, NotFound, VehicleWithoutOwner
from card_backend.vehicle.models import Vehicle
from card_backend.vehicle.repository import VehicleRepository
from card_backend.vehicle.schemas import VehicleCreate, VehicleOut


class VehicleNotFound(NotFound):
    code = "vehicle_not_found"


def create(session: Session, settings: Settings, body: VehicleCreate) -> VehicleOut:
    repo = VehicleRepository(session)
    governorates.check(settings, body.governorate)
    owner_id = repo.owner_id(body.owner_person_id, body.owner_national_id)
    if owner_id is None:
        raise VehicleWithoutOwner(
            {"owner_person_id": body.owner_person_id, "reason": "no registered person is the owner"}
        )
    plate = body.plate.upper()
    if repo.by_plate(plate, body.governorate) is not None:
        raise DuplicateVehicle({"plate": plate, "governorate": body.governorate})
    vehicle = repo.add(
        Vehicle(
            plate=plate,
            governorate=body.governorate,
            kind=body.kind.value,
            fuel=body.fuel.value,
            engine_cc=body.engine_cc,
            model_year=body.model_year,
            owner_person_id=owner_id,
        )
    )
    return VehicleOut.model_validate(vehicle)


def get(session: Session, vehicle_id: int) -> VehicleOut:
    vehicle = VehicleRepository(session).get(vehicle_id)
    if vehicle is None:
        raise VehicleNotFound({"vehicle_id": vehicle_id})
    return VehicleOut.model_validate(vehicle)


def of_owner(session: Session, person_id: int) -> list[VehicleOut]:
    return [VehicleOut.model_validate(v) for v in VehicleRepository(session).of_owner(person_id)]
