"""All SQL of driving licences."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from card_backend.family.models import Person
from card_backend.licence.models import Licence, LicenceState


class LicenceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, licence_id: int, *, for_update: bool = False) -> Licence | None:
        stmt = select(Licence).where(Licence.id == licence_id)
        return self.session.scalar(stmt.with_for_update() if for_update else stmt)

    def by_number(self, number: str) -> Licence | None:
        return self.session.scalar(select(Licence).where(Licence.number == number))

    def person_exists(self, person_id: int) -> bool:
        return self.session.scalar(select(Person.id).where(Person.id == person_id)) is not None

    def of_person(self, person_id: int) -> Sequence[Licence]:
        return self.session.scalars(
            select(Licence).where(Licence.person_id == person_id).order_by(Licence.id)
        ).all()

    def history(self, licence_id: int) -> Sequence[LicenceState]:
        stmt = select(LicenceState).where(LicenceState.licence_id == licence_id)
        return self.session.scalars(stmt.order_by(LicenceState.effective_on, LicenceState.id)).all()

    def add(self, licence: Licence) -> Licence:
        self.session.add(licence)
        self.session.flush()
        return licence

    def add_state(self, state: LicenceState) -> LicenceState:
        self.session.add(state)
        self.session.flush()
        return state
