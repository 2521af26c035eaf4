"""``cardctl``: operate the backend from a shell (migrations, users, imports, seeding, serving)."""

from __future__ import annotations

import getpass
import importlib

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from card_backend.config import get_settings
from card_backend.db import make_engine, make_session_factory, session_scope

app = typer.Typer(help="smartcard-ledger operations", no_args_is_help=True)
db_app = typer.Typer(help="database schema", no_args_is_help=True)
user_app = typer.Typer(help="staff accounts", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")
console = Console(stderr=True)


def _session_factory() -> sessionmaker[Session]:
    settings = get_settings()
    return make_session_factory(make_engine(settings.database_url))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Migrate the configured database (SQLite default or CARD_DATABASE_URL) with alembic."""
    from card_backend.migrate import upgrade

    upgrade(get_settings().database_url, revision)
    console.print(f"database at {revision}")


@user_app.command("create")
def user_create(
    username: str,
    role: Role = typer.Option(Role.ADMIN, help="admin, registrar, supervisor, clerk or auditor"),
    password: str | None = typer.Option(None, help="prompted when omitted", envvar="CARDCTL_PASSWORD"),
    point_id: int | None = typer.Option(None, help="a clerk's distribution point"),
) -> None:
    """Create a staff user (bootstraps the first admin)."""
    from card_backend.auth.service import create_user
    from card_backend.errors import DomainError

    if password is None:
        password = getpass.getpass("password: ")
    try:
        with session_scope(_session_factory()) as s:
            create_user(s, username=username, password=password, role=role, point_id=point_id)
    except DomainError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.detail}")
        raise typer.Exit(1) from exc
    console.print(f"user {username} ({role.value}) created")


@app.command("serve")
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Serve the API (and /docs)."""
    import uvicorn

    uvicorn.run(
        "card_backend.asgi:app", host=host, port=port, workers=workers, log_level="warning", access_log=False
    )


# Sub-commands owned by other packages join here when they exist.
for _module, _name in (
    ("card_backend.registry_cli", None),
    ("quota.cli", None),
    ("reader_agent.cli", None),
):
    try:
        _mod = importlib.import_module(_module)
    except ModuleNotFoundError as _exc:
        if _exc.name is None or not _module.startswith(_exc.name):
            raise
        continue
    if hasattr(_mod, "register"):
        _mod.register(app)

# The point of sale's commands (virtual card, personalisation, the reader agent, the clerk page).
_card = importlib.import_module("reader_agent.cli")
card_app = typer.Typer(help="cards: personalisation", no_args_is_help=True)
for _command in _card.app.registered_commands:
    if _command.name == "personalise":
        card_app.registered_commands.append(_command)
    else:
        app.registered_commands.append(_command)
app.add_typer(card_app, name="card")
