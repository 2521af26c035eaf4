"""HTTP for offline sync (devices) and the conflicts list (supervisors)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from card_backend.auth.deps import require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.cardauth.repository import CardAuthRepository
from card_backend.cardauth.service import device_point
from card_backend.db import session_scope
from card_backend.deps import SessionDep
from card_backend.ledger.endpoints import LedgerDep
from card_backend.ledger.errors import LedgerBusy
from card_backend.offline import service
from card_backend.offline.schemas import ConflictOut, SyncIn, SyncItemOut, SyncOut
from card_backend.types import BIGINT_MAX
from quota.engine import EngineBusy
from quota.redemption import Redemption

router = APIRouter(prefix="/api/v1/offline", tags=["offline"])
Device = Annotated[Principal, Depends(require_roles(Role.DEVICE))]
Supervisor = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.AUDITOR))]


@router.post("/sync", response_model=SyncOut)
async def sync(body: SyncIn, request: Request, principal: Device, ledger: LedgerDep) -> SyncOut:
    """Post what the point served offline; one result per item, in order. Safe to repeat."""
    factory = request.app.state.session_factory
    now = dt.datetime.now(dt.UTC)

    def accept() -> tuple[int, dict[str, SyncItemOut], list[service.Pending]]:
        with session_scope(factory) as session:
            device_id, point_code, _ = device_point(CardAuthRepository(session), principal)
            answered, pending = service.accept(
                session, list(body.items), device_id=device_id, point_code=point_code, now=now
            )
            return device_id, answered, pending

    device_id, answered, pending = await run_in_threadpool(accept)
    if pending:
        redemptions = [
            Redemption(
                str(p.item.id),
                p.item.card_serial,
                p.item.product_code,
                p.item.quantity_qty,
                p.item.point_code,
            )
            for p in pending
        ]
        try:
            outcomes = await ledger.group_engine().redeem_many_async(redemptions)
        except EngineBusy as exc:
            raise LedgerBusy("too many redemptions in flight; sync again with the same ids") from exc

        def settle() -> None:
            with session_scope(factory) as session:
                for item, outcome in zip(pending, outcomes, strict=True):
                    answered[str(item.item.id)] = service.settle(
                        session,
                        item,
                        ok=outcome.ok,
                        result=outcome.result,
                        quantity_qty=outcome.quantity_qty,
                        remaining_qty=outcome.remaining_qty,
                        device_id=device_id,
                        now=now,
                    )

        await run_in_threadpool(settle)
    return SyncOut(results=[answered[str(item.id)] for item in body.items])


@router.get("/conflicts", response_model=list[ConflictOut])
def conflicts(
    session: SessionDep,
    _: Supervisor,
    since: dt.datetime | None = None,
    point_code: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=BIGINT_MAX),
) -> list[ConflictOut]:
    """Offline redemptions served but not debitable, with the quantity at risk (oldest first)."""
    rows = CardAuthRepository(session).conflicts(
        since=since, point_code=point_code, limit=limit, offset=offset
    )
    return [ConflictOut.model_validate(row) for row in rows]
