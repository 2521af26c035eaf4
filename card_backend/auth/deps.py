"""Authentication and role checks as FastAPI dependencies. Every endpoint declares who may call it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.concurrency import run_in_threadpool

from card_backend.auth.principal import Principal, Role
from card_backend.auth.security import DEVICE_TOKEN_PREFIX, decode_access_token
from card_backend.auth.service import device_principal
from card_backend.auth.token_cache import DeviceTokenCache
from card_backend.deps import SettingsDep
from card_backend.errors import AuthenticationFailed, PermissionDenied

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


_device_cache = DeviceTokenCache()


def forget_device_tokens() -> None:
    """Drop this process's cached device principals (after a revocation, here or in another process:
    ``auth.revocations``)."""
    _device_cache.clear()


def _lookup_device(request: Request, token: str) -> Principal | None:
    """Device tokens are checked on every request: a short cache spares the database, and the lookup
    uses its own short session so no request holds a pooled connection while it waits (a request that
    awaits the group commit engine must not pin the connections the engine's writers need)."""
    with request.app.state.session_factory() as session:
        principal = device_principal(session, token)
    if principal is not None:
        _device_cache.put(token, principal)
    return principal


async def current_principal(
    request: Request, settings: SettingsDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Principal:
    """Async on purpose: a cached device or a JWT costs microseconds, and running it in the thread pool
    (FastAPI's default for ``def`` dependencies) cost more than the check itself on every request."""
    if not token:
        raise AuthenticationFailed("sign in first")
    if token.startswith(DEVICE_TOKEN_PREFIX):
        principal = _device_cache.get(token) or await run_in_threadpool(_lookup_device, request, token)
        if principal is None:
            raise AuthenticationFailed("unknown or revoked device token", code="invalid_device_token")
        return principal
    try:
        claims = decode_access_token(settings, token)
        role = Role(claims["role"])
    except (jwt.PyJWTError, ValueError) as exc:
        raise AuthenticationFailed("invalid or expired token", code="invalid_token") from exc
    point = claims.get("point_id")
    return Principal(kind="user", name=str(claims["sub"]), role=role, point_id=point)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(
    *roles: Role, admin: bool = True
) -> Callable[[Principal], Coroutine[None, None, Principal]]:
    """A dependency letting through the given roles, and admins unless ``admin=False`` (debits happen
    only at a point, by its device or clerk: an administrator cannot redeem a family's quota)."""
    allowed = frozenset(roles)
    admin_passes = admin and allowed != {Role.DEVICE}

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role in allowed or (principal.role == Role.ADMIN and admin_passes):
            return principal
        raise PermissionDenied(f"role {principal.role.value!r} may not do this", code="role_forbidden")

    return check


READERS = (Role.REGISTRAR, Role.SUPERVISOR, Role.AUDITOR, Role.CLERK)
