from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import OAuth2PasswordRequestForm

from card_backend.auth import service
from card_backend.auth.deps import CurrentPrincipal, forget_device_tokens, require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.auth.repository import UserRepository
from card_backend.auth.revocations import RevocationListener
from card_backend.auth.schemas import Me, Token, UserCreate, UserOut
from card_backend.deps import SessionDep, SettingsDep


@asynccontextmanager
async def _revocations_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """On PostgreSQL, listen for device revocations made by any API process (``auth.revocations``)."""
    engine = app.state.engine
    listener = None
    if engine.dialect.name == "postgresql":
        dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        listener = RevocationListener(dsn, forget_device_tokens).start()
    app.state.revocations = listener
    yield
    if listener is not None:
        await asyncio.to_thread(listener.stop)


router = APIRouter(prefix="/api/v1", tags=["auth"], lifespan=_revocations_lifespan)


@router.post("/auth/token", response_model=Token)
def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep, settings: SettingsDep
) -> Token:
    """OAuth2 password flow for staff; the token carries the role and, for clerks, the point."""
    access, role = service.sign_in(session, settings, form.username, form.password)
    return Token(access_token=access, role=role)


@router.get("/auth/me", response_model=Me)
def me(principal: CurrentPrincipal) -> Me:
    return Me(kind=principal.kind, name=principal.name, role=principal.role, point_id=principal.point_id)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(
    body: UserCreate, session: SessionDep, _: Principal = Depends(require_roles(Role.ADMIN))
) -> UserOut:
    user = service.create_user(
        session, username=body.username, password=body.password, role=body.role, point_id=body.point_id
    )
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut])
def list_users(
    session: SessionDep, _: Principal = Depends(require_roles(Role.ADMIN, Role.AUDITOR))
) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in UserRepository(session).list()]
