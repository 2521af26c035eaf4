"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, schema built by alembic.

PostgreSQL is required: when it cannot be reached the tests FAIL (never skip). Its URL is
``CARD_TEST_PG_URL`` (default: the CI server at 127.0.0.1:5432, database ``test``); each test session
(and each xdist worker) creates its own database from it and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.app import create_app
from card_backend.auth.principal import Role
from card_backend.auth.security import hash_password
from card_backend.config import Settings
from card_backend.db import make_engine, make_session_factory
from card_backend.migrate import upgrade


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-profile",
        default="short",
        choices=("short", "long"),
        help="short (CI: ~25 s of faults) or long (make chaos: ~3 min)",
    )


_REPORT_LINES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures tests report (the bank and partition invariants), shown even when output is captured."""
    for line in _REPORT_LINES:
        terminalreporter.write_line(line)


@pytest.fixture
def report() -> Callable[[str], None]:
    """``report(line)``: print a figure now and repeat it in the run's closing summary."""

    def _report(line: str) -> None:
        print(line)
        _REPORT_LINES.append(line)

    return _report


PG_ADMIN_URL = os.environ.get("CARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct-horse-battery"
_PASSWORD_HASH = hash_password(PASSWORD)


def _pg_url_for(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head for this test session."""
    name = f"sl_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL} and could not be reached: {exc}")
    url = _pg_url_for(name)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_pg(engine: Engine) -> None:
    with engine.begin() as conn:
        tables = conn.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
            )
        ).all()
        if tables:
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def _pg_engine_session(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url, pool_size=20)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(_pg_engine_session: Engine) -> Iterator[Engine]:
    """PostgreSQL only: for concurrency, locking and throughput tests."""
    _truncate_pg(_pg_engine_session)
    yield _pg_engine_session
    _truncate_pg(_pg_engine_session)


@pytest.fixture
def sqlite_engine(sqlite_template: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "db.sqlite3"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on the embedded default and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def settings(engine: Engine) -> Settings:
    return Settings(database_url=str(engine.url), jwt_secret="test-secret-" + "x" * 40, log_json=True)


@pytest.fixture
def app(settings: Settings, engine: Engine):  # type: ignore[no-untyped-def]
    return create_app(settings, engine)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c


@pytest.fixture
def make_user(session_factory: sessionmaker[Session]) -> Callable[..., str]:
    """Create a staff user directly in the database; returns its username (password: PASSWORD)."""
    from card_backend.auth.models import User

    counter = iter(range(1, 10_000))

    def _make(role: Role | str, point_id: int | None = None, username: str | None = None) -> str:
        role = Role(role)
        name = username or f"{role.value}{next(counter)}"
        with session_factory.begin() as s:
            s.add(User(username=name, password_hash=_PASSWORD_HASH, role=role.value, point_id=point_id))
        return name

    return _make


@pytest.fixture
def auth(client: TestClient, make_user: Callable[..., str]) -> Callable[..., dict[str, str]]:
    """``auth(Role.REGISTRAR)`` → headers with a fresh bearer token for a new user of that role."""

    def _auth(role: Role | str, point_id: int | None = None) -> dict[str, str]:
        name = make_user(role, point_id)
        r = client.post("/api/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    return _auth
