from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        Index("ix_cards_holder", "holder_type", "holder_id"),
        # The redemption group's card lookup reads state and holder from the index alone (0008).
        UniqueConstraint("serial", name="uq_cards_serial",
                         postgresql_include=["state", "holder_type", "holder_id"]),
        # One active card per holder, enforced by the database too (partial unique index).
        Index(
            "uq_cards_one_active_per_holder",
            "holder_type",
            "holder_id",
            unique=True,
            postgresql_where=text("state = 'active'"),
            sqlite_where=text("state = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(32))
    holder_type: Mapped[str] = mapped_column(String(16))
    holder_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(12), default="active")
    state_reason: Mapped[str] = mapped_column(String(200), default="")
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), nullable=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    last_counter: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class LostReportFailure(Base):
    """A citizen's lost-card report that matched nothing (migration 0009): counted to rate-limit
    guessing, per card serial and per client address. Written in its own transaction, so the refused
    request's rollback does not erase it."""

    __tablename__ = "lost_report_failures"
    __table_args__ = (
        Index("ix_lost_report_failures_serial_at", "serial", "at"),
        Index("ix_lost_report_failures_client_at", "client", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
