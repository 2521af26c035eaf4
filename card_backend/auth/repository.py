from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from card_backend.auth.models import User
from card_backend.point.models import Device, Point


class UserRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_username(self, username: str) -> User | None:
        return self.session.scalar(select(User).where(User.username == username))

    def add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user

    def list(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.id)))

    def device_by_token_hash(self, digest: str) -> tuple[Device, str] | None:
        row = self.session.execute(
            select(Device, Point.code)
            .join(Point, Point.id == Device.point_id)
            .where(Device.token_sha256 == digest, Device.revoked_at.is_(None))
        ).first()
        return None if row is None else (row[0], row[1])
