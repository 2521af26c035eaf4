"""Staff accounts and sign-in. Roles are checked at the edge (deps.require_roles)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from card_backend.auth.models import User
from card_backend.auth.principal import Principal, Role
from card_backend.auth.repository import UserRepository
from card_backend.auth.security import hash_password, issue_access_token, token_sha256, verify_password
from card_backend.config import Settings
from card_backend.errors import AuthenticationFailed, Conflict, InvalidInput

# A hash to verify against when the user does not exist, so timing does not reveal usernames.
_DUMMY_HASH = hash_password("not-a-real-password-xx")


class ClerkNeedsPoint(InvalidInput):
    code = "clerk_needs_point"


class DuplicateUsername(Conflict):
    code = "duplicate_username"


def create_user(session: Session, *, username: str, password: str, role: Role, point_id: int | None) -> User:
    repo = UserRepository(session)
    if role == Role.DEVICE:
        raise InvalidInput("devices are enrolled at a point, not created as users", code="invalid_role")
    if role == Role.CLERK and point_id is None:
        raise ClerkNeedsPoint("a clerk is bound to a distribution point")
    if repo.by_username(username) is not None:
        raise DuplicateUsername(f"user {username!r} exists")
    user = User(username=username, password_hash=hash_password(password), role=role.value, point_id=point_id)
    return repo.add(user)


def sign_in(session: Session, settings: Settings, username: str, password: str) -> tuple[str, Role]:
    user = UserRepository(session).by_username(username)
    if user is None or not user.active:
        verify_password(password, _DUMMY_HASH)
        raise AuthenticationFailed("wrong username or password", code="invalid_credentials")
    if not verify_password(password, user.password_hash):
        raise AuthenticationFailed("wrong username or password", code="invalid_credentials")
    role = Role(user.role)
    return issue_access_token(settings, username=user.username, role=role, point_id=user.point_id), role


def device_principal(session: Session, token: str) -> Principal | None:
    found = UserRepository(session).device_by_token_hash(token_sha256(token))
    if found is None:
        return None
    device, point_code = found
    return Principal(
        kind="device",
        name=device.name,
        role=Role.DEVICE,
        point_id=device.point_id,
        device_id=device.id,
        point_code=point_code,
    )
