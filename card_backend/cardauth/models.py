"""Tables of card authentication (migration 0004): challenges, signed transactions, offline conflicts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base


class CardChallenge(Base):
    """A random challenge for one tap, bound to the device that asked for it; used once."""

    __tablename__ = "card_challenges"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    challenge: Mapped[bytes] = mapped_column(LargeBinary)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CardTransaction(Base):
    """A debit the card signed: evidence of the card's consent and the idempotency record of sync."""

    __tablename__ = "card_transactions"
    __table_args__ = (UniqueConstraint("card_serial", "counter", name="uq_card_transactions_card_serial"),)

    redemption_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    card_serial: Mapped[str] = mapped_column(String(32))
    counter: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    product_code: Mapped[str] = mapped_column(String(32))
    quantity_qty: Mapped[int] = mapped_column(BigInteger)
    point_code: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    mode: Mapped[str] = mapped_column(String(8))  # online | offline
    status: Mapped[str] = mapped_column(String(12))  # signed | posted | refused | conflict
    result: Mapped[str | None] = mapped_column(String(40), nullable=True)
    happened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OfflineConflict(Base):
    """An offline redemption that was served but cannot be debited: the supervisors' work list."""

    __tablename__ = "offline_conflicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    redemption_id: Mapped[str] = mapped_column(String(36), unique=True)
    card_serial: Mapped[str] = mapped_column(String(32))
    holder_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    holder_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    product_code: Mapped[str] = mapped_column(String(32))
    point_code: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    quantity_at_risk_qty: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(40))
    happened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
