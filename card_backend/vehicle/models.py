from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base


class Vehicle(Base):
    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("plate", "governorate", name="uq_vehicles_plate_governorate"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate: Mapped[str] = mapped_column(String(16))
    governorate: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    fuel: Mapped[str] = mapped_column(String(10))
    engine_cc: Mapped[int] = mapped_column(Integer)
    model_year: Mapped[int] = mapped_column(Integer)
    owner_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
