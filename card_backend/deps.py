"""Request-scoped dependencies: the unit of work and the settings.

The session commits when the endpoint returns and *before* the response is sent
(``scope="function"``), so an acknowledged write is a committed write (invariant 4).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from card_backend.config import Settings
from card_backend.errors import Conflict


def get_session(request: Request) -> Iterator[Session]:
    session: Session = request.app.state.session_factory()
    try:
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict(str(exc.orig).splitlines()[0], code="constraint_violated") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
