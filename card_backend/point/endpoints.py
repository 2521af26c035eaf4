"""HTTP for distribution points and device enrolment (registrars and supervisors enrol devices)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import event

from card_backend.auth import deps as auth_deps
from card_backend.auth.deps import READERS, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.deps import SessionDep, SettingsDep
from card_backend.point import service
from card_backend.point.repository import PointRepository
from card_backend.point.schemas import (
    DeviceEnroll,
    DeviceEnrolled,
    DeviceOut,
    PointCreate,
    PointKind,
    PointOut,
    PointUpdate,
)
from card_backend.types import BIGINT_MAX, Id

router = APIRouter(prefix="/api/v1", tags=["points"])
WRITE = require_roles(Role.REGISTRAR)
DEVICES = require_roles(Role.REGISTRAR, Role.SUPERVISOR)
READ = require_roles(*READERS)


@router.post("/points", response_model=PointOut, status_code=201)
def create_point(
    body: PointCreate, session: SessionDep, settings: SettingsDep, _: Principal = Depends(WRITE)
) -> PointOut:
    return service.create(session, settings, body)


@router.get("/points", response_model=list[PointOut])
def list_points(
    session: SessionDep,
    _: Principal = Depends(READ),
    governorate: str | None = None,
    kind: PointKind | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=BIGINT_MAX),
) -> list[PointOut]:
    rows = PointRepository(session).search(
        governorate=governorate, kind=kind.value if kind else None, limit=limit, offset=offset
    )
    return [PointOut.model_validate(p) for p in rows]


@router.get("/points/{code}", response_model=PointOut)
def get_point(code: str, session: SessionDep, _: Principal = Depends(READ)) -> PointOut:
    return service.get(session, code)


@router.patch("/points/{code}", response_model=PointOut)
def update_point(
    code: str, body: PointUpdate, session: SessionDep, _: Principal = Depends(WRITE)
) -> PointOut:
    return service.update(session, code, body)


@router.post("/points/{code}/devices", response_model=DeviceEnrolled, status_code=201)
def enroll_device(
    code: str, body: DeviceEnroll, session: SessionDep, _: Principal = Depends(DEVICES)
) -> DeviceEnrolled:
    """Enrol a reader agent; the answer holds its token — the only time it is ever shown."""
    return service.enroll_device(session, code, body.name)


@router.get("/points/{code}/devices", response_model=list[DeviceOut])
def list_devices(code: str, session: SessionDep, _: Principal = Depends(READ)) -> list[DeviceOut]:
    return service.devices(session, code)


@router.post("/devices/{device_id}/revoke", response_model=DeviceOut)
def revoke_device(device_id: Id, session: SessionDep, _: Principal = Depends(DEVICES)) -> DeviceOut:
    """The device's token stops working at once, in every API process: this one drops its cached
    devices after the commit, the others when PostgreSQL delivers the revocation's notification
    (``auth.revocations``)."""
    out = service.revoke_device(session, device_id)
    # After the commit: a request between a forget before it and the commit would cache the device again.
    event.listen(session, "after_commit", lambda _: auth_deps.forget_device_tokens(), once=True)
    return out
