from __future__ import annotations

from datetime import date

from sqlalchemy import Date, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from card_backend.db import Base


class Licence(Base):
    __tablename__ = "licences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    categories: Mapped[str] = mapped_column(String(32))
    issued_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date] = mapped_column(Date)


class LicenceState(Base):
    """A licence's state from ``effective_on`` until the next state: the history answers 'as of'."""

    __tablename__ = "licence_states"
    __table_args__ = (Index("ix_licence_states_licence_on", "licence_id", "effective_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licences.id"))
    state: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(200), default="")
    effective_on: Mapped[date] = mapped_column(Date)
