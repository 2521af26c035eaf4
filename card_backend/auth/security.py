"""Password hashing (Argon2 via pwdlib), staff JWTs (PyJWT) and device tokens (SHA-256)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pwdlib import PasswordHash

from card_backend.config import Settings

_hasher = PasswordHash.recommended()
DEVICE_TOKEN_PREFIX = "dev_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher.verify(password, password_hash)


def issue_access_token(settings: Settings, *, username: str, role: str, point_id: int | None) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": username,
        "role": role,
        "point_id": point_id,
        "iat": now,
        "exp": now + timedelta(minutes=settings.access_token_minutes),
        "typ": "staff",
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)


def decode_access_token(settings: Settings, token: str) -> dict[str, Any]:
    """Raises ``jwt.PyJWTError`` on a bad signature, an expired token or a missing claim."""
    claims: dict[str, Any] = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        options={"require": ["exp", "sub", "role"]},
    )
    return claims


def new_device_token() -> str:
    """A high-entropy token shown once; it is checked on every request, so SHA-256 (not Argon2) stores it."""
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
