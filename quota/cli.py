"""``cardctl rules …``, ``cardctl period open`` and ``cardctl journal …``: the quota engine from a shell."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console

from card_backend.config import get_settings
from card_backend.db import make_engine, make_session_factory, session_scope
from quota import rules_repository
from quota.domain.rules import ruleset_from_yaml
from quota.service import LedgerService

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    rules_app = typer.Typer(help="allocation rules", no_args_is_help=True)
    period_app = typer.Typer(help="allowance periods", no_args_is_help=True)
    journal_app = typer.Typer(help="the sealed journal", no_args_is_help=True)
    app.add_typer(rules_app, name="rules")
    app.add_typer(period_app, name="period")
    app.add_typer(journal_app, name="journal")

    @rules_app.command("load")
    def rules_load(path: Path, actor: str = "cardctl") -> None:
        """Load a rule file (YAML): new products are added, changed rules get a new version."""
        ruleset = ruleset_from_yaml(path.read_text(encoding="utf-8"))
        factory = make_session_factory(make_engine(get_settings().database_url))
        with session_scope(factory) as session:
            products, versions = rules_repository.install(session, ruleset, actor)
        console.print(f"{products} products and {versions} rule versions added")

    @period_app.command("open")
    def period_open(
        period_key: str | None = typer.Option(None, help="YYYY-MM or YYYY-MM-DD; default: now"),
    ) -> None:
        """Open every current rule's period for the whole population (numpy + bulk load)."""
        from quota.opening import open_period

        settings = get_settings()
        factory = make_session_factory(make_engine(settings.database_url))
        with session_scope(factory) as session:
            report = open_period(
                session,
                at=None if period_key else datetime.now(UTC),
                period_key=period_key,
                governorates=settings.governorates,
                opened_by="cardctl",
            )
        console.print(f"opened {report.rows} allowances")

    @journal_app.command("seal")
    def journal_seal() -> None:
        """Seal every committed, unsealed journal entry into the hash chain."""
        ledger = _ledger()
        seals = ledger.seal()
        console.print(f"{len(seals)} seals made")

    @journal_app.command("verify")
    def journal_verify() -> None:
        """Recompute the chain; name every changed, removed, inserted or reordered entry (exit 1 if any)."""
        report = _ledger().verify()
        for f in report.findings:
            typer.echo(f"{f.kind} seq={f.seq} seal={f.seal_id} {f.detail}")
        typer.echo(
            f"journal {'ok' if report.ok else 'TAMPERED'}: {report.seals_checked} seals, "
            f"{report.entries_checked} entries checked"
        )
        if not report.ok:
            raise typer.Exit(1)


def _ledger() -> LedgerService:
    from quota.redemption import RuleTerms

    settings = get_settings()
    return LedgerService(make_engine(settings.database_url), RuleTerms(), None)
