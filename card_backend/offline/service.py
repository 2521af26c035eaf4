"""Offline sync: every redemption a point served without the backend is posted or becomes a conflict.

DESIGN invariant 6: none is dropped. An item whose card signature does not check out, whose counter
was already used, or which the ledger refuses (the family's quota is gone, the card was blocked
meanwhile...) is recorded in ``offline_conflicts`` with the quantity that was handed out and cannot
be debited — the amount at risk a supervisor follows up. Sync is idempotent by redemption id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from card_backend.cardauth import service as cardauth
from card_backend.cardauth.errors import (
    CardAuthFailed,
    CardUnknown,
    CounterReplayed,
    ExistsWithDifferentPayload,
)
from card_backend.cardauth.models import OfflineConflict
from card_backend.cardauth.repository import CardAuthRepository
from card_backend.offline.schemas import OfflineRedemptionIn, SyncItemOut


@dataclass
class Pending:
    """An item accepted as genuine, waiting for the ledger's answer."""

    item: OfflineRedemptionIn
    holder: tuple[str | None, int | None]


def debit_of(item: OfflineRedemptionIn) -> cardauth.SignedDebit:
    return cardauth.SignedDebit(
        item.id,
        item.card_serial,
        item.product_code,
        item.quantity_qty,
        item.point_code,
        item.counter,
        bytes.fromhex(item.signature_hex),
        item.happened_at,
    )


def record_conflict(
    session: Session,
    item: OfflineRedemptionIn,
    *,
    reason: str,
    device_id: int,
    holder: tuple[str | None, int | None],
    now: dt.datetime,
) -> SyncItemOut:
    repo = CardAuthRepository(session)
    if repo.conflict_for(str(item.id)) is None:
        repo.add(
            OfflineConflict(
                redemption_id=str(item.id),
                card_serial=item.card_serial,
                holder_type=holder[0],
                holder_id=holder[1],
                product_code=item.product_code,
                point_code=item.point_code,
                device_id=device_id,
                quantity_at_risk_qty=item.quantity_qty,
                reason=reason,
                happened_at=item.happened_at,
                created_at=now,
            )
        )
    return SyncItemOut(
        id=str(item.id), status="conflict", result=reason, quantity_at_risk_qty=item.quantity_qty
    )


def accept(
    session: Session, items: list[OfflineRedemptionIn], *, device_id: int, point_code: str, now: dt.datetime
) -> tuple[dict[str, SyncItemOut], list[Pending]]:
    """Check each item's card signature; answer the bad ones now, return the genuine ones."""
    answered: dict[str, SyncItemOut] = {}
    pending: list[Pending] = []
    repo = CardAuthRepository(session)
    for item in items:
        rid = str(item.id)
        if item.point_code != point_code:
            answered[rid] = SyncItemOut(id=rid, status="rejected", result="wrong_point")
            continue
        card = repo.card(item.card_serial)
        holder = (card.holder_type, card.holder_id) if card is not None else (None, None)
        try:
            # Every check runs before the one INSERT, so a refusal leaves nothing half-written.
            cardauth.record_signed_debit(
                session, debit_of(item), device_id=device_id, mode="offline", now=now
            )
        except ExistsWithDifferentPayload:
            answered[rid] = SyncItemOut(id=rid, status="rejected", result="exists_with_different_payload")
            continue
        except (CardAuthFailed, CounterReplayed, CardUnknown) as exc:
            answered[rid] = record_conflict(
                session, item, reason=exc.code, device_id=device_id, holder=holder, now=now
            )
            continue
        pending.append(Pending(item, holder))
    return answered, pending


def settle(
    session: Session,
    pending: Pending,
    *,
    ok: bool,
    result: str,
    quantity_qty: int,
    remaining_qty: int | None,
    device_id: int,
    now: dt.datetime,
) -> SyncItemOut:
    rid = str(pending.item.id)
    if ok:
        cardauth.set_outcome(session, rid, "posted", result)
        return SyncItemOut(
            id=rid, status="posted", result=result, quantity_qty=quantity_qty, remaining_qty=remaining_qty
        )
    cardauth.set_outcome(session, rid, "conflict", result)
    return record_conflict(
        session, pending.item, reason=result, device_id=device_id, holder=pending.holder, now=now
    )
