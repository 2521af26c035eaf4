"""HTTP for bulk imports: the families CSV as a multipart upload (registrars and admins)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Query, UploadFile

from card_backend.auth.deps import require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.deps import SessionDep, SettingsDep
from card_backend.imports import service
from card_backend.imports.schemas import ImportReport

router = APIRouter(prefix="/api/v1", tags=["imports"])


@router.post("/imports/families", response_model=ImportReport)
def import_families(
    session: SessionDep,
    settings: SettingsDep,
    file: UploadFile = File(description="families CSV, one row per person (see the module docs)"),
    skip_invalid: bool = Query(False, description="import the valid families, skip those with errors"),
    who: Principal = Depends(require_roles(Role.REGISTRAR)),
) -> ImportReport:
    """Any error imports nothing (422 ``import_rejected``, report in ``detail``) unless ``skip_invalid``."""
    return service.import_families(
        session,
        settings,
        file.file,
        actor=who.actor,
        source=file.filename or "upload.csv",
        skip_invalid=skip_invalid,
        total_bytes=file.size,
    )
