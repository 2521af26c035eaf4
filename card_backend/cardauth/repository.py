"""Every query of card authentication and offline sync."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from card_backend.card.models import Card
from card_backend.cardauth.models import CardChallenge, CardTransaction, OfflineConflict
from card_backend.point.models import Point


class CardAuthRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def card(self, serial: str, *, for_update: bool = False) -> Card | None:
        query = select(Card).where(Card.serial == serial)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def point(self, point_id: int) -> Point | None:
        return self.session.get(Point, point_id)

    def add(self, row: CardChallenge | CardTransaction | OfflineConflict) -> None:
        self.session.add(row)
        self.session.flush()

    def challenge(self, challenge_id: str, *, for_update: bool = False) -> CardChallenge | None:
        query = select(CardChallenge).where(CardChallenge.id == challenge_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).first()

    def transaction(self, redemption_id: str) -> CardTransaction | None:
        return self.session.get(CardTransaction, redemption_id)

    def transaction_with_counter(self, serial: str, counter: int) -> CardTransaction | None:
        query = select(CardTransaction).where(
            CardTransaction.card_serial == serial, CardTransaction.counter == counter
        )
        return self.session.scalars(query).first()

    def synced_offline_qty(self, serial: str, product_code: str, after_counter: int) -> int:
        """Offline debits of this card and product signed after a certificate, already received."""
        query = select(func.coalesce(func.sum(CardTransaction.quantity_qty), 0)).where(
            CardTransaction.card_serial == serial,
            CardTransaction.product_code == product_code,
            CardTransaction.mode == "offline",
            CardTransaction.counter > after_counter,
        )
        return int(self.session.scalar(query) or 0)

    def conflict_for(self, redemption_id: str) -> OfflineConflict | None:
        query = select(OfflineConflict).where(OfflineConflict.redemption_id == redemption_id)
        return self.session.scalars(query).first()

    def conflicts(
        self, *, since: datetime | None, point_code: str | None, limit: int, offset: int
    ) -> Sequence[OfflineConflict]:
        query = select(OfflineConflict).order_by(OfflineConflict.id)
        if since is not None:
            query = query.where(OfflineConflict.created_at >= since)
        if point_code is not None:
            query = query.where(OfflineConflict.point_code == point_code)
        return self.session.scalars(query.limit(limit).offset(offset)).all()

    def purge_expired_challenges(self, now: datetime, limit: int = 1000) -> None:
        """Old challenges are worthless; drop a bounded batch so the table stays small."""
        ids = self.session.scalars(
            select(CardChallenge.id).where(CardChallenge.expires_at < now).limit(limit)
        ).all()
        for challenge_id in ids:
            row = self.session.get(CardChallenge, challenge_id)
            if row is not None:
                self.session.delete(row)
