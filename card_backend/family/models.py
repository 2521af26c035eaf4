from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, Index, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base


class Family(Base):
    __tablename__ = "families"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    book_number: Mapped[str] = mapped_column(String(32), unique=True)
    governorate: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    head_person_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    email: Mapped[str | None] = mapped_column(String(120), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    national_id: Mapped[str] = mapped_column(String(11), unique=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"), index=True)
    first_name_ar: Mapped[str] = mapped_column(String(60))
    last_name_ar: Mapped[str] = mapped_column(String(60))
    first_name_en: Mapped[str] = mapped_column(String(60), default="")
    last_name_en: Mapped[str] = mapped_column(String(60), default="")
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))
    relation: Mapped[str] = mapped_column(String(16))
    alive: Mapped[bool] = mapped_column(default=True)
    died_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class FamilyEvent(Base):
    """History instead of overwrites: every change to a family, who made it, and old/new values."""

    __tablename__ = "family_events"
    __table_args__ = (Index("ix_family_events_family_at", "family_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    family_id: Mapped[int] = mapped_column(ForeignKey("families.id"))
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Exclusion(Base):
    """A holder on the exclusion list, with the rule that excluded it (RULES.md: 2022 criteria)."""

    __tablename__ = "exclusions"
    __table_args__ = (Index("ix_exclusions_holder", "holder_type", "holder_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder_type: Mapped[str] = mapped_column(String(16))
    holder_id: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(64))
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date, nullable=True)
