"""All SQL of the family registry."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from card_backend.family.models import Exclusion, Family, FamilyEvent, Person


def flush_unique(session: Session, obj: object) -> bool:
    """Insert ``obj``; ``False`` when a unique index refused it, so the service can name the rule.

    Only a concurrent request can get past a service's own duplicate check, and only PostgreSQL runs
    requests concurrently: there the insert goes in a SAVEPOINT. SQLite serialises writers, and with
    pysqlite a SAVEPOINT opened before any write would commit on release, so it is not used there.
    """
    if session.get_bind().dialect.name != "postgresql":
        session.add(obj)
        session.flush()
        return True
    try:
        with session.begin_nested():
            session.add(obj)
            session.flush()
    except IntegrityError:
        return False
    return True


class FamilyRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, family_id: int, *, for_update: bool = False) -> Family | None:
        stmt = select(Family).where(Family.id == family_id)
        if for_update:
            stmt = stmt.with_for_update()
        return self.session.scalar(stmt)

    def by_book_number(self, book_number: str) -> Family | None:
        return self.session.scalar(select(Family).where(Family.book_number == book_number))

    def search(
        self, *, governorate: str | None, book_number: str | None, limit: int, offset: int
    ) -> Sequence[Family]:
        stmt = select(Family).order_by(Family.id).limit(limit).offset(offset)
        if governorate is not None:
            stmt = stmt.where(Family.governorate == governorate)
        if book_number is not None:
            stmt = stmt.where(Family.book_number == book_number)
        return self.session.scalars(stmt).all()

    def add_family(self, family: Family) -> Family | None:
        return family if flush_unique(self.session, family) else None

    def add_person(self, person: Person) -> Person | None:
        return person if flush_unique(self.session, person) else None

    def person(self, person_id: int) -> Person | None:
        return self.session.get(Person, person_id)

    def person_by_national_id(self, national_id: str) -> Person | None:
        return self.session.scalar(select(Person).where(Person.national_id == national_id))

    def existing_national_ids(self, national_ids: Sequence[str]) -> list[str]:
        return list(
            self.session.scalars(select(Person.national_id).where(Person.national_id.in_(national_ids)))
        )

    def members(self, family_id: int) -> Sequence[Person]:
        return self.session.scalars(
            select(Person).where(Person.family_id == family_id).order_by(Person.id)
        ).all()

    def history(self, family_id: int) -> Sequence[FamilyEvent]:
        stmt = select(FamilyEvent).where(FamilyEvent.family_id == family_id).order_by(FamilyEvent.id)
        return self.session.scalars(stmt).all()

    def record(
        self,
        family_id: int,
        kind: str,
        actor: str,
        at: datetime,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
    ) -> FamilyEvent:
        event = FamilyEvent(family_id=family_id, kind=kind, actor=actor, at=at, old=old, new=new)
        self.session.add(event)
        self.session.flush()
        return event

    def exclusions(self, holder_type: str, holder_id: int) -> Sequence[Exclusion]:
        stmt = select(Exclusion).where(Exclusion.holder_type == holder_type, Exclusion.holder_id == holder_id)
        return self.session.scalars(stmt.order_by(Exclusion.id)).all()
