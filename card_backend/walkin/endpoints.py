"""Walk-in sales HTTP: a point sells to someone without a card; supervisors read the report.

HTTP only: the rules live in ``quota.domain.walkin`` and ``quota.walkin``. A refused sale is a 409
``{"error": <result>, "detail": <stored answer>}`` like a refused redemption (e.g. ``walk_in_cap_reached``).
"""

from __future__ import annotations

import threading
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from card_backend.auth.deps import require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.errors import Conflict, InvalidInput, NotFound
from card_backend.ledger.errors import LedgerRefused, WrongPoint
from card_backend.ledger.schemas import OutcomeOut
from card_backend.types import Code
from card_backend.walkin.schemas import (
    WalkInCapIn,
    WalkInCapOut,
    WalkInDayOut,
    WalkInReportOut,
    WalkInSaleIn,
    WalkInSaleOut,
)
from quota.domain.walkin import WalkInResult
from quota.ledger_repository import point_code_of
from quota.walkin import WalkInService

router = APIRouter(prefix="/api/v1/walk-in", tags=["walk-in"])
_create_lock = threading.Lock()
MAX_REPORT_DAYS = 366

Seller = Annotated[Principal, Depends(require_roles(Role.DEVICE, Role.CLERK, admin=False))]
ReportReader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.AUDITOR))]
CapSetter = Annotated[Principal, Depends(require_roles(Role.ADMIN))]


async def get_walk_in(request: Request) -> WalkInService:
    service: WalkInService | None = getattr(request.app.state, "walk_in", None)
    if service is None:
        with _create_lock:
            service = getattr(request.app.state, "walk_in", None)
            if service is None:
                settings = request.app.state.settings
                service = WalkInService(request.app.state.engine, zone=settings.walk_in_zone,
                                        default_cap_qty=settings.walk_in_daily_cap_qty)
                request.app.state.walk_in = service
    return service


WalkInDep = Annotated[WalkInService, Depends(get_walk_in)]


def _check_point(service: WalkInService, principal: Principal, point_code: str) -> None:
    """A device or a clerk tied to a point sells at that point only."""
    if principal.point_id is None:
        return
    own = principal.point_code
    if own is None:
        with service.db.connect() as conn:
            own = point_code_of(conn, principal.point_id)
    if point_code != own:
        raise WrongPoint(f"this {principal.kind} belongs to point {own}")


@router.post("/sales", response_model=OutcomeOut,
             responses={409: {"description": "refused: error is the result code"}})
def sell(body: WalkInSaleIn, principal: Seller, service: WalkInDep) -> OutcomeOut:
    """Sell to someone without a card at the free price, within the point's daily cap; the same id and
    payload replays the first answer. ``remaining_qty`` is what is left of today's cap."""
    _check_point(service, principal, body.point_code)
    outcome = service.sell(str(body.id), body.product_code, body.quantity_qty, body.point_code,
                           principal.actor)
    out = OutcomeOut(id=outcome.entry_id, result=outcome.result, quantity_qty=outcome.quantity_qty,
                     remaining_qty=outcome.remaining_qty, price_minor=outcome.price_minor,
                     replayed=outcome.replayed)
    if not outcome.ok:
        raise LedgerRefused(out.model_dump(mode="json"), code=outcome.result)
    return out


@router.get("/report", response_model=WalkInReportOut)
def report(_: ReportReader, service: WalkInDep, day_from: date, day_to: date,
           point_code: Annotated[str | None, Query(max_length=32)] = None) -> WalkInReportOut:
    """Per local day, point and product: sales, quantity, takings and the cap; then each sale."""
    if day_to < day_from or (day_to - day_from).days >= MAX_REPORT_DAYS:
        raise InvalidInput(f"day_to must be 0 to {MAX_REPORT_DAYS - 1} days after day_from", code="bad_range")
    found = service.report(point_code, day_from, day_to)
    return WalkInReportOut(days=[WalkInDayOut.model_validate(d, from_attributes=True) for d in found.days],
                           sales=[WalkInSaleOut.model_validate(s) for s in found.sales])


@router.put("/caps/{product_code}", response_model=WalkInCapOut)
def set_cap(product_code: Annotated[Code, Path()], body: WalkInCapIn, principal: CapSetter,
            service: WalkInDep) -> WalkInCapOut:
    """Set a walk-in product's daily cap at every point, or at one point (whose own cap wins)."""
    result = service.set_cap(product_code, body.daily_cap_qty, principal.actor, body.point_code)
    if result is WalkInResult.PRODUCT_UNKNOWN:
        raise NotFound("no such product", code=result.value)
    if result is not WalkInResult.OK:
        raise Conflict("this product is not sold walk-in", code=result.value)
    return WalkInCapOut(product_code=product_code, point_code=body.point_code,
                        daily_cap_qty=body.daily_cap_qty)
