"""All SQL of vehicles."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from card_backend.family.models import Person
from card_backend.vehicle.models import Vehicle


class VehicleRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, vehicle_id: int) -> Vehicle | None:
        return self.session.get(Vehicle, vehicle_id)

    def by_plate(self, plate: str, governorate: str) -> Vehicle | None:
        return self.session.scalar(
            select(Vehicle).where(Vehicle.plate == plate, Vehicle.governorate == governorate)
        )

    def owner_id(self, person_id: int | None, national_id: str | None) -> int | None:
        stmt = select(Person.id)
        stmt = (
            stmt.where(Person.id == person_id)
            if person_id is not None
            else stmt.where(Person.national_id == national_id)
        )
        return self.session.scalar(stmt)

    def of_owner(self, person_id: int) -> Sequence[Vehicle]:
        return self.session.scalars(
            select(Vehicle).where(Vehicle.owner_person_id == person_id).order_by(Vehicle.id)
        ).all()

    def add(self, vehicle: Vehicle) -> Vehicle:
        self.session.add(vehicle)
        self.session.flush()
        return vehicle
