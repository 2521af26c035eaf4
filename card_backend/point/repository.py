"""All SQL of distribution points and their devices."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from card_backend.point.models import Device, Point


class PointRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_code(self, code: str) -> Point | None:
        return self.session.scalar(select(Point).where(Point.code == code))

    def search(
        self, *, governorate: str | None, kind: str | None, limit: int, offset: int
    ) -> Sequence[Point]:
        stmt = select(Point).order_by(Point.code).limit(limit).offset(offset)
        if governorate is not None:
            stmt = stmt.where(Point.governorate == governorate)
        if kind is not None:
            stmt = stmt.where(Point.kind == kind)
        return self.session.scalars(stmt).all()

    def add(self, obj: Point | Device) -> None:
        self.session.add(obj)
        self.session.flush()

    def device(self, device_id: int) -> Device | None:
        return self.session.get(Device, device_id)

    def announce_revocation(self) -> None:
        """Tell every API process, at commit, to drop its cached devices (``auth.revocations``)."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(text("SELECT pg_notify('device_revoked', '')"))

    def devices(self, point_id: int) -> Sequence[Device]:
        return self.session.scalars(
            select(Device).where(Device.point_id == point_id).order_by(Device.id)
        ).all()
