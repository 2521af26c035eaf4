"""Family use cases. Nothing is overwritten silently: every change appends a ``family_events`` row with
who made it, when, and the old and new values, so a family's history can be replayed and audited.

Services never commit; the request's session commits once (``card_backend.deps.get_session``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from card_backend import governorates, nationalid
from card_backend.card import service as card_service
from card_backend.config import Settings
from card_backend.errors import Conflict, DuplicateFamilyBook, DuplicateNationalId, InvalidInput, NotFound
from card_backend.family.models import Family, Person
from card_backend.family.repository import FamilyRepository
from card_backend.family.schemas import (
    EventKind,
    EventOut,
    FamilyCreate,
    FamilyOut,
    FamilyUpdate,
    PersonIn,
    PersonOut,
    Relation,
)


class FamilyNotFound(NotFound):
    code = "family_not_found"


class PersonNotFound(NotFound):
    code = "person_not_found"


class NotAMember(InvalidInput):
    code = "person_not_in_family"


class FamilyNeedsOneHead(InvalidInput):
    code = "family_needs_one_head"


class InvalidDate(InvalidInput):
    code = "invalid_date"


class PersonDeceased(Conflict):
    code = "person_deceased"


class HeadCannotLeave(Conflict):
    code = "head_cannot_leave"


class FamilyDissolved(Conflict):
    code = "family_dissolved"


def _now() -> datetime:
    return datetime.now(UTC)


def person_snapshot(p: Person) -> dict[str, Any]:
    return {
        "person_id": p.id,
        "national_id": p.national_id,
        "first_name_ar": p.first_name_ar,
        "last_name_ar": p.last_name_ar,
        "first_name_en": p.first_name_en,
        "last_name_en": p.last_name_en,
        "birth_date": p.birth_date.isoformat(),
        "sex": p.sex,
        "relation": p.relation,
    }


def _check_people(repo: FamilyRepository, settings: Settings, people: list[PersonIn]) -> None:
    """National IDs valid, not repeated in the request, not registered; birth dates not in the future."""
    count = len(settings.governorates)
    seen: set[str] = set()
    for p in people:
        nationalid.validate(p.national_id, count)
        if p.national_id in seen:
            raise DuplicateNationalId({"national_id": p.national_id, "reason": "repeated in the request"})
        seen.add(p.national_id)
        if p.birth_date > date.today():
            raise InvalidDate(
                {"field": "birth_date", "reason": "in the future", "national_id": p.national_id}
            )
    taken = repo.existing_national_ids(sorted(seen))
    if taken:
        raise DuplicateNationalId({"national_id": taken[0], "reason": "already registered"})


def _new_person(family_id: int, p: PersonIn) -> Person:
    return Person(
        family_id=family_id,
        national_id=p.national_id,
        first_name_ar=p.first_name_ar,
        last_name_ar=p.last_name_ar,
        first_name_en=p.first_name_en,
        last_name_en=p.last_name_en,
        birth_date=p.birth_date,
        sex=p.sex.value,
        relation=p.relation.value,
        alive=True,
    )


def _add_family(repo: FamilyRepository, family: Family) -> Family:
    """A concurrent request may register the same book number between our check and our insert."""
    added = repo.add_family(family)
    if added is None:
        raise DuplicateFamilyBook({"book_number": family.book_number, "reason": "registered concurrently"})
    return added


def _add_person(repo: FamilyRepository, person: Person) -> Person:
    added = repo.add_person(person)
    if added is None:
        raise DuplicateNationalId({"national_id": person.national_id, "reason": "registered concurrently"})
    return added


def _family(repo: FamilyRepository, family_id: int) -> Family:
    family = repo.get(family_id, for_update=True)
    if family is None:
        raise FamilyNotFound({"family_id": family_id})
    return family


def _member(repo: FamilyRepository, family: Family, person_id: int) -> Person:
    person = repo.person(person_id)
    if person is None:
        raise PersonNotFound({"person_id": person_id})
    if person.family_id != family.id:
        raise NotAMember({"person_id": person_id, "family_id": family.id})
    return person


def _dissolve_if_empty(repo: FamilyRepository, family: Family) -> bool:
    if any(m.alive for m in repo.members(family.id)):
        return False
    family.status = "dissolved"
    return True


def view(session: Session, family_id: int) -> FamilyOut:
    repo = FamilyRepository(session)
    family = repo.get(family_id)
    if family is None:
        raise FamilyNotFound({"family_id": family_id})
    out = FamilyOut.model_validate(family)
    out.members = [PersonOut.model_validate(m) for m in repo.members(family_id)]
    out.history = [EventOut.model_validate(e) for e in repo.history(family_id)]
    return out


def create(session: Session, settings: Settings, actor: str, body: FamilyCreate) -> FamilyOut:
    repo = FamilyRepository(session)
    governorates.check(settings, body.governorate)
    heads = [m for m in body.members if m.relation == Relation.HEAD]
    if len(heads) != 1:
        raise FamilyNeedsOneHead({"heads": len(heads), "reason": "exactly one member must be the head"})
    if repo.by_book_number(body.book_number) is not None:
        raise DuplicateFamilyBook({"book_number": body.book_number})
    _check_people(repo, settings, body.members)
    family = _add_family(
        repo,
        Family(
            book_number=body.book_number,
            governorate=body.governorate,
            address=body.address,
            phone=body.phone,
            email=body.email,
            status="active",
        ),
    )
    people = [_add_person(repo, _new_person(family.id, m)) for m in body.members]
    family.head_person_id = next(p.id for p in people if p.relation == Relation.HEAD.value)
    new = {
        "book_number": family.book_number,
        "governorate": family.governorate,
        "address": family.address,
        "head_person_id": family.head_person_id,
        "members": [person_snapshot(p) for p in people],
    }
    repo.record(family.id, EventKind.CREATE.value, actor, _now(), None, new)
    return view(session, family.id)


def update(session: Session, settings: Settings, actor: str, family_id: int, body: FamilyUpdate) -> FamilyOut:
    repo = FamilyRepository(session)
    family = _family(repo, family_id)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "governorate" in changes:
        governorates.check(settings, changes["governorate"])
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    for field, value in changes.items():
        if getattr(family, field) != value:
            old[field], new[field] = getattr(family, field), value
            setattr(family, field, value)
    if new:
        repo.record(family.id, EventKind.UPDATE.value, actor, _now(), old, new)
    return view(session, family.id)


def birth(session: Session, settings: Settings, actor: str, family_id: int, child: PersonIn) -> FamilyOut:
    repo = FamilyRepository(session)
    family = _family(repo, family_id)
    if family.status != "active":
        raise FamilyDissolved({"family_id": family_id})
    if child.relation == Relation.HEAD:
        raise FamilyNeedsOneHead({"reason": "a birth cannot add a second head"})
    _check_people(repo, settings, [child])
    person = _add_person(repo, _new_person(family.id, child))
    repo.record(family.id, EventKind.BIRTH.value, actor, _now(), None, person_snapshot(person))
    return view(session, family.id)


def death(session: Session, actor: str, family_id: int, person_id: int, died_on: date) -> FamilyOut:
    """The person stays in the family book, marked deceased. A deceased head stays head until a head
    change is recorded (the registrar decides who); the family is dissolved when nobody alive is left."""
    repo = FamilyRepository(session)
    family = _family(repo, family_id)
    person = _member(repo, family, person_id)
    if not person.alive:
        raise PersonDeceased({"person_id": person_id, "died_on": str(person.died_on)})
    if died_on > date.today() or died_on < person.birth_date:
        raise InvalidDate({"field": "died_on", "reason": "after today or before the birth date"})
    person.alive, person.died_on = False, died_on
    new: dict[str, Any] = {"person_id": person.id, "alive": False, "died_on": died_on.isoformat()}
    if _dissolve_if_empty(repo, family):
        new["family_status"] = "dissolved"
        # nobody is left to draw the family's quota: a card kept by someone else must not go on drawing
        # the period already opened (the next opening leaves a dissolved family out)
        blocked = card_service.block_holder_cards(session, actor, "family", family.id, "family_dissolved")
        if blocked:
            new["cards_blocked"] = blocked
    repo.record(family.id, EventKind.DEATH.value, actor, _now(), {"person_id": person.id, "alive": True}, new)
    return view(session, family.id)


def split(
    session: Session,
    settings: Settings,
    actor: str,
    family_id: int,
    person_id: int,
    new_book_number: str,
    governorate: str | None,
    address: str,
) -> FamilyOut:
    """The member founds a new family (new book number) and heads it; both families record the move."""
    repo = FamilyRepository(session)
    old_family = _family(repo, family_id)
    person = _member(repo, old_family, person_id)
    if not person.alive:
        raise PersonDeceased({"person_id": person_id})
    if old_family.head_person_id == person.id:
        raise HeadCannotLeave({"person_id": person_id, "reason": "change the head of the family first"})
    target_governorate = governorates.check(settings, governorate or old_family.governorate)
    if repo.by_book_number(new_book_number) is not None:
        raise DuplicateFamilyBook({"book_number": new_book_number})
    new_family = _add_family(
        repo,
        Family(book_number=new_book_number, governorate=target_governorate, address=address, status="active"),
    )
    before = {"family_id": old_family.id, "book_number": old_family.book_number, "relation": person.relation}
    after = {"family_id": new_family.id, "book_number": new_family.book_number, "relation": "head"}
    person.family_id, person.relation = new_family.id, Relation.HEAD.value
    new_family.head_person_id = person.id
    session.flush()
    at = _now()
    old_side: dict[str, Any] = {"person_id": person.id, **after}
    if _dissolve_if_empty(repo, old_family):
        old_side["family_status"] = "dissolved"
    repo.record(old_family.id, EventKind.SPLIT.value, actor, at, {"person_id": person.id, **before}, old_side)
    repo.record(new_family.id, EventKind.SPLIT.value, actor, at, {"person_id": person.id, **before}, after)
    return view(session, new_family.id)


def change_head(
    session: Session, actor: str, family_id: int, person_id: int, old_head_relation: Relation
) -> FamilyOut:
    repo = FamilyRepository(session)
    family = _family(repo, family_id)
    person = _member(repo, family, person_id)
    if not person.alive:
        raise PersonDeceased({"person_id": person_id})
    if family.head_person_id == person.id:
        return view(session, family.id)
    if old_head_relation == Relation.HEAD:
        raise FamilyNeedsOneHead({"reason": "the former head cannot stay head"})
    old: dict[str, Any] = {"head_person_id": family.head_person_id, "relation": person.relation}
    previous = repo.person(family.head_person_id) if family.head_person_id is not None else None
    if previous is not None:
        old["old_head_relation"] = previous.relation
        previous.relation = old_head_relation.value
    person.relation = Relation.HEAD.value
    family.head_person_id = person.id
    new = {"head_person_id": person.id, "old_head_relation": old_head_relation.value}
    repo.record(family.id, EventKind.HEAD_CHANGE.value, actor, _now(), old, new)
    return view(session, family.id)


def person_by_national_id(session: Session, national_id: str) -> PersonOut:
    person = FamilyRepository(session).person_by_national_id(national_id)
    if person is None:
        raise PersonNotFound({"national_id": national_id[:3] + "********"})
    return PersonOut.model_validate(person)
