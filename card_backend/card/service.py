"""Card use cases: issue, block, report lost (staff or citizen), replace, and the holder summary.

Only one active card per holder: checked here for a clear error and enforced by a partial unique index
(``uq_cards_one_active_per_holder``) so two concurrent issues cannot both win.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from card_backend.card import states
from card_backend.card.models import Card
from card_backend.card.repository import CardRepository, LostReportFailures
from card_backend.card.schemas import (
    CardOut,
    ExclusionOut,
    FamilyBrief,
    HolderSummary,
    LostReportOut,
    VehicleBrief,
)
from card_backend.errors import (
    Conflict,
    DomainError,
    DuplicateSerial,
    HolderHasActiveCard,
    IllegalCardTransition,
    NotFound,
)


class CardNotFound(NotFound):
    code = "card_not_found"


class HolderNotFound(NotFound):
    code = "holder_not_found"


class HolderInactive(Conflict):
    code = "holder_inactive"


class ReportRateLimited(DomainError):
    code = "report_rate_limited"
    status = 429


class ReportNotMatched(NotFound):
    """Same answer whether the serial or the national ID is wrong: the form reveals nothing."""

    code = "report_not_matched"


def new_serial() -> str:
    return "SC" + secrets.token_hex(7).upper()


def _card(repo: CardRepository, serial: str) -> Card:
    card = repo.by_serial(serial, for_update=True)
    if card is None:
        raise CardNotFound({"serial": serial})
    return card


def _check_holder(repo: CardRepository, holder_type: str, holder_id: int) -> None:
    if holder_type == "family":
        family = repo.family(holder_id)
        if family is None:
            raise HolderNotFound({"holder_type": holder_type, "holder_id": holder_id})
        if family.status != "active":
            raise HolderInactive(
                {"holder_type": holder_type, "holder_id": holder_id, "status": family.status}
            )
    elif holder_type == "vehicle":
        if repo.vehicle(holder_id) is None:
            raise HolderNotFound({"holder_type": holder_type, "holder_id": holder_id})
    else:
        raise HolderNotFound({"holder_type": holder_type, "reason": f"one of {states.HOLDER_TYPES}"})


def _insert(
    repo: CardRepository, holder_type: str, holder_id: int, serial: str | None, replaces: int | None
) -> Card:
    serial = serial or new_serial()
    if repo.by_serial(serial) is not None:
        raise DuplicateSerial({"serial": serial})
    active = repo.active_for(holder_type, holder_id)
    if active is not None:
        raise HolderHasActiveCard(
            {"holder_type": holder_type, "holder_id": holder_id, "serial": active.serial}
        )
    card = repo.add(
        Card(
            serial=serial,
            holder_type=holder_type,
            holder_id=holder_id,
            state=states.ACTIVE,
            replaces_id=replaces,
        )
    )
    if card is None:  # lost a race with a concurrent request
        raise HolderHasActiveCard({"holder_type": holder_type, "holder_id": holder_id})
    return card


def issue(session: Session, holder_type: str, holder_id: int, serial: str | None) -> CardOut:
    repo = CardRepository(session)
    _check_holder(repo, holder_type, holder_id)
    return CardOut.model_validate(_insert(repo, holder_type, holder_id, serial, None))


def _move(card: Card, target: str, reason: str) -> None:
    if not states.can_move(card.state, target):
        raise IllegalCardTransition({"serial": card.serial, "from": card.state, "to": target})
    card.state, card.state_reason = target, reason[:200]


def block(session: Session, actor: str, serial: str, reason: str) -> CardOut:
    card = _card(CardRepository(session), serial)
    _move(card, states.BLOCKED, f"{reason} ({actor})")
    session.flush()
    return CardOut.model_validate(card)


def block_holder_cards(
    session: Session, actor: str, holder_type: str, holder_id: int, reason: str
) -> list[str]:
    """Block the holder's active card (a family dissolved: nobody alive is left to draw its quota);
    returns the serials blocked. A card already blocked, lost or replaced stays as it is."""
    repo = CardRepository(session)
    blocked = []
    for card in repo.of_holder(holder_type, holder_id):
        if card.state == states.ACTIVE:
            _move(card, states.BLOCKED, f"{reason} ({actor})")
            blocked.append(card.serial)
    session.flush()
    return blocked


def report_lost(session: Session, actor: str, serial: str, reason: str) -> CardOut:
    card = _card(CardRepository(session), serial)
    _move(card, states.LOST, f"{reason} ({actor})")
    session.flush()
    return CardOut.model_validate(card)


@dataclass(frozen=True)
class ReportLimits:
    """Failed reports allowed per card serial and per client address in a sliding ``window``."""

    per_serial: int = 5
    per_client: int = 30
    window: timedelta = timedelta(hours=1)


def citizen_report_lost(
    session: Session,
    serial: str,
    national_id: str,
    *,
    client: str = "unknown",
    failures: sessionmaker[Session] | None = None,
    limits: ReportLimits = ReportLimits(),
    now: datetime | None = None,
) -> LostReportOut:
    """A member of the holder's family (for a vehicle: of the owner's family) blocks the card at once.

    Repeating the report is harmless: a card already lost or blocked keeps its state. The form is
    public, so guessing is rate-limited: after ``limits.per_serial`` failed reports on a serial, or
    ``per_client`` from one address, within the window, the form answers ``report_rate_limited`` (429)
    whatever is typed — a stranger cannot try national IDs until a family's card is blocked. Failures
    are recorded through ``failures`` (a session factory: their own transaction, kept although the
    refused request rolls back).
    """
    now = now or datetime.now(UTC)
    if failures is not None:
        with failures() as s:
            by_serial, by_client = LostReportFailures(s).since(serial, client, now - limits.window)
        if by_serial >= limits.per_serial or by_client >= limits.per_client:
            raise ReportRateLimited("too many reports that matched nothing; try again later or call the "
                                    "hotline")
    repo = CardRepository(session)
    card = repo.by_serial(serial, for_update=True)
    family_id: int | None = None
    if card is not None and card.holder_type == "family":
        family_id = card.holder_id
    elif card is not None and card.holder_type == "vehicle":
        vehicle = repo.vehicle(card.holder_id)
        owner = repo.person(vehicle.owner_person_id if vehicle else None)
        family_id = owner.family_id if owner else None
    if card is None or family_id is None or repo.member_with_national_id(family_id, national_id) is None:
        if failures is not None:
            with failures.begin() as s:
                LostReportFailures(s).record(serial, client, now)
        raise ReportNotMatched("no card with this serial belongs to a family with this national ID")
    if card.state == states.ACTIVE:
        _move(card, states.LOST, f"reported lost by the citizen on {date.today().isoformat()}")
        session.flush()
    return LostReportOut(serial=card.serial, state=card.state)


def replace(session: Session, actor: str, serial: str, new_serial: str | None) -> CardOut:
    """The old card (blocked or lost) becomes ``replaced``; a new card takes over the same holder."""
    repo = CardRepository(session)
    old = _card(repo, serial)
    if old.state == states.ACTIVE:
        raise IllegalCardTransition(
            {
                "serial": serial,
                "from": old.state,
                "to": states.REPLACED,
                "reason": "block it or report it lost first",
            }
        )
    _move(old, states.REPLACED, f"replaced ({actor})")
    session.flush()
    return CardOut.model_validate(_insert(repo, old.holder_type, old.holder_id, new_serial, old.id))


def get(session: Session, serial: str) -> CardOut:
    card = CardRepository(session).by_serial(serial)
    if card is None:
        raise CardNotFound({"serial": serial})
    return CardOut.model_validate(card)


def of_holder(session: Session, holder_type: str, holder_id: int) -> list[CardOut]:
    return [CardOut.model_validate(c) for c in CardRepository(session).of_holder(holder_type, holder_id)]


def holder_summary(session: Session, serial: str) -> HolderSummary:
    repo = CardRepository(session)
    card = repo.by_serial(serial)
    if card is None:
        raise CardNotFound({"serial": serial})
    family_brief: FamilyBrief | None = None
    vehicle_brief: VehicleBrief | None = None
    if card.holder_type == "family":
        family = repo.family(card.holder_id)
        if family is not None:
            head = repo.person(family.head_person_id)
            family_brief = FamilyBrief(
                id=family.id,
                book_number=family.book_number,
                governorate=family.governorate,
                status=family.status,
                members_alive=repo.alive_members(family.id),
                head_name_ar=f"{head.first_name_ar} {head.last_name_ar}" if head else "",
                head_name_en=f"{head.first_name_en} {head.last_name_en}".strip() if head else "",
            )
    elif card.holder_type == "vehicle":
        vehicle = repo.vehicle(card.holder_id)
        owner = repo.person(vehicle.owner_person_id) if vehicle else None
        if vehicle is not None and owner is not None:
            vehicle_brief = VehicleBrief(
                id=vehicle.id,
                plate=vehicle.plate,
                governorate=vehicle.governorate,
                kind=vehicle.kind,
                fuel=vehicle.fuel,
                engine_cc=vehicle.engine_cc,
                model_year=vehicle.model_year,
                owner_person_id=owner.id,
                owner_family_id=owner.family_id,
            )
    active = repo.active_for(card.holder_type, card.holder_id)
    today = date.today()
    exclusions = [
        ExclusionOut.model_validate(e)
        for e in repo.exclusions(card.holder_type, card.holder_id)
        if e.since <= today and (e.until is None or e.until >= today)
    ]
    return HolderSummary(
        card=CardOut.model_validate(card),
        holder_type=card.holder_type,
        holder_id=card.holder_id,
        family=family_brief,
        vehicle=vehicle_brief,
        active_card_serial=active.serial if active else None,
        exclusions=exclusions,
    )
