"""Points and device enrolment. A device token is shown once; only its SHA-256 is stored (it is checked on
every request, so a fast hash of a high-entropy secret, not Argon2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from card_backend import governorates
from card_backend.auth.security import new_device_token, token_sha256
from card_backend.config import Settings
from card_backend.errors import Conflict, InvalidInput, NotFound
from card_backend.point.models import Device, Point
from card_backend.point.repository import PointRepository
from card_backend.point.schemas import DeviceEnrolled, DeviceOut, PointCreate, PointOut, PointUpdate

_PRODUCT_CODE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


class PointNotFound(NotFound):
    code = "point_not_found"


class DeviceNotFound(NotFound):
    code = "device_not_found"


class DuplicatePoint(Conflict):
    code = "duplicate_point_code"


class DeviceAlreadyRevoked(Conflict):
    code = "device_already_revoked"


class InvalidProductCode(InvalidInput):
    code = "invalid_product_code"


def _products(codes: list[str]) -> list[str]:
    for code in codes:
        if not _PRODUCT_CODE.match(code):
            raise InvalidProductCode({"product": code, "reason": "snake_case product code expected"})
    return sorted(set(codes))


def _point(repo: PointRepository, code: str) -> Point:
    point = repo.by_code(code)
    if point is None:
        raise PointNotFound({"code": code})
    return point


def create(session: Session, settings: Settings, body: PointCreate) -> PointOut:
    repo = PointRepository(session)
    governorates.check(settings, body.governorate)
    if repo.by_code(body.code) is not None:
        raise DuplicatePoint({"code": body.code})
    point = Point(
        code=body.code,
        name_ar=body.name_ar,
        name_en=body.name_en,
        kind=body.kind.value,
        governorate=body.governorate,
        products=_products(body.products),
        active=True,
    )
    repo.add(point)
    return PointOut.model_validate(point)


def update(session: Session, code: str, body: PointUpdate) -> PointOut:
    repo = PointRepository(session)
    point = _point(repo, code)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if "products" in changes:
        changes["products"] = _products(changes["products"])
    for field, value in changes.items():
        setattr(point, field, value)
    session.flush()
    return PointOut.model_validate(point)


def get(session: Session, code: str) -> PointOut:
    return PointOut.model_validate(_point(PointRepository(session), code))


def enroll_device(session: Session, code: str, name: str) -> DeviceEnrolled:
    repo = PointRepository(session)
    point = _point(repo, code)
    token = new_device_token()
    device = Device(point_id=point.id, name=name, token_sha256=token_sha256(token))
    repo.add(device)
    session.refresh(device)
    return DeviceEnrolled(
        id=device.id,
        point_id=point.id,
        name=device.name,
        created_at=device.created_at,
        revoked_at=None,
        token=token,
    )


def devices(session: Session, code: str) -> list[DeviceOut]:
    repo = PointRepository(session)
    return [DeviceOut.model_validate(d) for d in repo.devices(_point(repo, code).id)]


def revoke_device(session: Session, device_id: int) -> DeviceOut:
    device = PointRepository(session).device(device_id)
    if device is None:
        raise DeviceNotFound({"device_id": device_id})
    if device.revoked_at is not None:
        raise DeviceAlreadyRevoked({"device_id": device_id})
    device.revoked_at = datetime.now(UTC)
    session.flush()
    PointRepository(session).announce_revocation()
    return DeviceOut.model_validate(device)
