"""All SQL of cards, including the holder look-ups a card needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from card_backend.card.models import Card, LostReportFailure
from card_backend.family.models import Exclusion, Family, Person
from card_backend.family.repository import flush_unique
from card_backend.vehicle.models import Vehicle


class CardRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_serial(self, serial: str, *, for_update: bool = False) -> Card | None:
        stmt = select(Card).where(Card.serial == serial)
        return self.session.scalar(stmt.with_for_update() if for_update else stmt)

    def active_for(self, holder_type: str, holder_id: int) -> Card | None:
        return self.session.scalar(
            select(Card).where(
                Card.holder_type == holder_type, Card.holder_id == holder_id, Card.state == "active"
            )
        )

    def of_holder(self, holder_type: str, holder_id: int) -> Sequence[Card]:
        stmt = select(Card).where(Card.holder_type == holder_type, Card.holder_id == holder_id)
        return self.session.scalars(stmt.order_by(Card.id)).all()

    def add(self, card: Card) -> Card | None:
        """``None`` when a unique index refused it (a serial, or a second active card for the holder
        written by a concurrent request)."""
        return card if flush_unique(self.session, card) else None

    def family(self, family_id: int) -> Family | None:
        return self.session.get(Family, family_id)

    def vehicle(self, vehicle_id: int) -> Vehicle | None:
        return self.session.get(Vehicle, vehicle_id)

    def person(self, person_id: int | None) -> Person | None:
        return self.session.get(Person, person_id) if person_id is not None else None

    def alive_members(self, family_id: int) -> int:
        stmt = select(func.count()).select_from(Person).where(Person.family_id == family_id, Person.alive)
        return int(self.session.scalar(stmt) or 0)

    def member_with_national_id(self, family_id: int, national_id: str) -> Person | None:
        return self.session.scalar(
            select(Person).where(
                Person.family_id == family_id, Person.national_id == national_id, Person.alive
            )
        )

    def exclusions(self, holder_type: str, holder_id: int) -> Sequence[Exclusion]:
        stmt = select(Exclusion).where(Exclusion.holder_type == holder_type, Exclusion.holder_id == holder_id)
        return self.session.scalars(stmt.order_by(Exclusion.id)).all()


class LostReportFailures:
    """Failed citizen lost-card reports (rate limiting)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def since(self, serial: str, client: str, at: datetime) -> tuple[int, int]:
        """Failures since ``at`` for this serial, and from this client."""
        f = LostReportFailure
        by_serial = self.session.scalar(select(func.count()).where(f.serial == serial, f.at >= at))
        by_client = self.session.scalar(select(func.count()).where(f.client == client, f.at >= at))
        return int(by_serial or 0), int(by_client or 0)

    def record(self, serial: str, client: str, at: datetime) -> None:
        self.session.add(LostReportFailure(serial=serial, client=client, at=at))
