"""Tables of the quota ledger. See DESIGN.md: the allowance row is the only row a redemption updates."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Product(Base):
    __tablename__ = "products"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name_ar: Mapped[str] = mapped_column(String(80))
    name_en: Mapped[str] = mapped_column(String(80))
    unit: Mapped[str] = mapped_column(String(8))
    price_per_qty: Mapped[int] = mapped_column(Integer, default=1)
    free_price_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    walk_in: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)


class RuleVersion(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_rule_versions_code_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    product_code: Mapped[str] = mapped_column(String(32))
    holder_type: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(String(64), default="")


class Allowance(Base):
    __tablename__ = "allowances"
    __table_args__ = (
        UniqueConstraint(
            "holder_type", "holder_id", "product_code", "period_start", name="uq_allowances_holder_period"
        ),
        CheckConstraint(
            "used_qty >= 0 AND held_qty >= 0 AND used_qty + held_qty <= granted_qty", name="within_grant"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    holder_type: Mapped[str] = mapped_column(String(16))
    holder_id: Mapped[int] = mapped_column(BigInteger)
    product_code: Mapped[str] = mapped_column(String(32))
    rule_version_id: Mapped[int] = mapped_column(Integer)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    base_qty: Mapped[int] = mapped_column(BigInteger)
    granted_qty: Mapped[int] = mapped_column(BigInteger)
    used_qty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    held_qty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    carried_qty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    topup_qty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    home_point_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    binding_changes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class JournalEntry(Base):
    __tablename__ = "journal"
    __table_args__ = (
        Index("ix_journal_holder", "holder_id", "seq"),
        Index("ix_journal_point_created", "point_code", "created_at"),
        Index("ix_journal_reversal", "ref_entry_id", postgresql_where=text("ref_entry_id IS NOT NULL"),
              sqlite_where=text("ref_entry_id IS NOT NULL")),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(12))
    result: Mapped[str] = mapped_column(String(40))
    allowance_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    holder_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    holder_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    product_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    point_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    card_serial: Mapped[str | None] = mapped_column(String(32), nullable=True)
    quantity_qty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    price_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    remaining_qty: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload_hash: Mapped[str] = mapped_column(String(64))
    ref_entry_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Seal(Base):
    __tablename__ = "seals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    entry_count: Mapped[int] = mapped_column(Integer)
    entries_hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    seal_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Hold(Base):
    __tablename__ = "holds"
    # the pending holds of a point (stock they set aside, read by every group at a tracked point)
    __table_args__ = (
        Index("ix_holds_pending_point", "point_code", postgresql_where=text("state = 'pending'"),
              sqlite_where=text("state = 'pending'")),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    allowance_id: Mapped[int] = mapped_column(BigInteger, index=True)
    point_code: Mapped[str] = mapped_column(String(32))
    reserved_qty: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(10), default="pending")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    posted_qty: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StockDelivery(Base):
    """A delivery to a point; ``delivery_id`` (client-made, unique) makes a retried request count once,
    and ``balance_qty`` is the balance it answered, replayed to a retry (both None on rows before 0010)."""

    __tablename__ = "stock_deliveries"
    __table_args__ = (
        Index("ix_stock_deliveries_point_product", "point_code", "product_code"),
        Index("uq_stock_deliveries_delivery_id", "delivery_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    point_code: Mapped[str] = mapped_column(String(32))
    product_code: Mapped[str] = mapped_column(String(32))
    quantity_qty: Mapped[int] = mapped_column(BigInteger)
    delivered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str] = mapped_column(String(64), default="")
    delivery_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    balance_qty: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
