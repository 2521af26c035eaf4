"""Licence use cases. States are appended, never edited, so 'what was the state on D?' has an answer."""

from __future__ import annotations

from datetime import date

from sqlalchemy.orm import Session

from card_backend.errors import Conflict, NotFound
from card_backend.licence import states
from card_backend.licence.models import Licence, LicenceState
from card_backend.licence.repository import LicenceRepository
from card_backend.licence.schemas import LicenceCreate, LicenceOut, StateChange, StateEntryOut, StateOnOut


class LicenceNotFound(NotFound):
    code = "licence_not_found"


class DuplicateLicence(Conflict):
    code = "duplicate_licence_number"


class IllegalLicenceTransition(Conflict):
    code = "illegal_licence_transition"


def _entries(rows: list[LicenceState]) -> list[states.Entry]:
    return [states.Entry(r.effective_on, r.state, r.reason) for r in rows]


def _licence(repo: LicenceRepository, licence_id: int, *, for_update: bool = False) -> Licence:
    licence = repo.get(licence_id, for_update=for_update)
    if licence is None:
        raise LicenceNotFound({"licence_id": licence_id})
    return licence


def view(session: Session, licence_id: int) -> LicenceOut:
    repo = LicenceRepository(session)
    out = LicenceOut.model_validate(_licence(repo, licence_id))
    out.history = [StateEntryOut.model_validate(s) for s in repo.history(licence_id)]
    return out


def create(session: Session, body: LicenceCreate) -> LicenceOut:
    from card_backend.family.service import PersonNotFound

    repo = LicenceRepository(session)
    if not repo.person_exists(body.person_id):
        raise PersonNotFound({"person_id": body.person_id})
    if repo.by_number(body.number) is not None:
        raise DuplicateLicence({"number": body.number})
    licence = repo.add(
        Licence(
            person_id=body.person_id,
            number=body.number,
            categories=body.categories.upper(),
            issued_on=body.issued_on,
            expires_on=body.expires_on,
        )
    )
    repo.add_state(
        LicenceState(licence_id=licence.id, state="valid", reason="issued", effective_on=body.issued_on)
    )
    return view(session, licence.id)


def change_state(session: Session, licence_id: int, body: StateChange) -> LicenceOut:
    repo = LicenceRepository(session)
    licence = _licence(repo, licence_id, for_update=True)
    new = states.Entry(body.effective_on, body.state.value, body.reason)
    problem = states.transition_problem(_entries(list(repo.history(licence_id))), licence.issued_on, new)
    if problem is not None:
        raise IllegalLicenceTransition({"licence_id": licence_id, "state": new.state, "reason": problem})
    repo.add_state(
        LicenceState(licence_id=licence_id, state=new.state, reason=new.reason, effective_on=new.effective_on)
    )
    return view(session, licence_id)


def state_on(session: Session, licence_id: int, on: date) -> StateOnOut:
    repo = LicenceRepository(session)
    licence = _licence(repo, licence_id)
    answer = states.state_on(
        licence.issued_on, licence.expires_on, _entries(list(repo.history(licence_id))), on
    )
    return StateOnOut(
        licence_id=licence_id, on=on, state=answer.state, reason=answer.reason, since=answer.since
    )


def of_person(session: Session, person_id: int) -> list[LicenceOut]:
    repo = LicenceRepository(session)
    return [view(session, lic.id) for lic in repo.of_person(person_id)]
