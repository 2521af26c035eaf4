"""HTTP for cards. Registrars issue, block and replace; a citizen can report a card lost with a minimal
form (serial + national ID of a family member) and it is blocked at once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.card import service
from card_backend.card.schemas import (
    CardIssue,
    CardOut,
    CitizenLostReport,
    HolderSummary,
    HolderType,
    LostReportOut,
    Replace,
    StateReason,
)
from card_backend.deps import SessionDep, SettingsDep
from card_backend.types import Id

router = APIRouter(prefix="/api/v1", tags=["cards"])
WRITE = require_roles(Role.REGISTRAR)
READ = require_roles(*READERS)


@router.post("/cards", response_model=CardOut, status_code=201)
def issue_card(body: CardIssue, session: SessionDep, _: Principal = Depends(WRITE)) -> CardOut:
    """Issue a card to a family or a vehicle; the serial is generated when omitted."""
    return service.issue(session, body.holder_type.value, body.holder_id, body.serial)


@router.post("/cards/report-lost", response_model=LostReportOut,
             responses={404: {"description": "report_not_matched"},
                        429: {"description": "report_rate_limited"}})
def citizen_report_lost(
    body: CitizenLostReport, session: SessionDep, request: Request, settings: SettingsDep
) -> LostReportOut:
    """Public on purpose (RULES.md item 10: suspend at once, by phone or web): a wrong serial or national
    ID gets the same ``report_not_matched`` answer, so the form discloses nothing; repeated failures on
    a serial or from one address are refused for an hour (``report_rate_limited``, 429)."""
    limits = service.ReportLimits(settings.lost_report_failures_per_serial,
                                  settings.lost_report_failures_per_client)
    client = request.client.host if request.client is not None else "unknown"
    return service.citizen_report_lost(session, body.serial, body.national_id, client=client,
                                       failures=request.app.state.session_factory, limits=limits)


@router.get("/cards/{serial}", response_model=CardOut)
def get_card(serial: str, session: SessionDep, _: Principal = Depends(READ)) -> CardOut:
    return service.get(session, serial)


@router.get("/cards/{serial}/holder", response_model=HolderSummary)
def card_holder(serial: str, session: SessionDep, _: Principal = Depends(READ)) -> HolderSummary:
    """Who the card belongs to: the family (members alive, head) or the vehicle (and owner), exclusions."""
    return service.holder_summary(session, serial)


@router.post("/cards/{serial}/block", response_model=CardOut)
def block_card(
    serial: str, body: StateReason, session: SessionDep, who: Principal = Depends(WRITE)
) -> CardOut:
    return service.block(session, who.actor, serial, body.reason)


@router.post("/cards/{serial}/lost", response_model=CardOut)
def report_lost(
    serial: str, body: StateReason, session: SessionDep, who: Principal = Depends(WRITE)
) -> CardOut:
    return service.report_lost(session, who.actor, serial, body.reason)


@router.post("/cards/{serial}/replace", response_model=CardOut, status_code=201)
def replace_card(serial: str, body: Replace, session: SessionDep, who: Principal = Depends(WRITE)) -> CardOut:
    """Replace a blocked or lost card: the old becomes ``replaced``, the new serves the same holder."""
    return service.replace(session, who.actor, serial, body.serial)


@router.get("/holders/{holder_type}/{holder_id}/cards", response_model=list[CardOut])
def cards_of_holder(
    holder_type: HolderType, holder_id: Id, session: SessionDep, _: Principal = Depends(READ)
) -> list[CardOut]:
    return service.of_holder(session, holder_type.value, holder_id)
