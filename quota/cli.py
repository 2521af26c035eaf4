"""``cardctl rules …``, ``period open``, ``journal …``, ``walk-in cap`` and ``worker``: the quota engine
from a shell."""

from __future__ import annotations

import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from card_backend.config import Settings, get_settings
from card_backend.db import make_engine, make_session_factory, session_scope
from quota import rules_repository
from quota.domain.chain import Anchor
from quota.domain.rules import ruleset_from_yaml
from quota.service import LedgerService

if TYPE_CHECKING:
    from quota.worker import Round

console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    rules_app = typer.Typer(help="allocation rules", no_args_is_help=True)
    period_app = typer.Typer(help="allowance periods", no_args_is_help=True)
    journal_app = typer.Typer(help="the sealed journal", no_args_is_help=True)
    app.add_typer(rules_app, name="rules")
    app.add_typer(period_app, name="period")
    app.add_typer(journal_app, name="journal")
    walk_in_app = typer.Typer(help="walk-in sales (no card, free price, capped per point per day)",
                              no_args_is_help=True)
    app.add_typer(walk_in_app, name="walk-in")

    @walk_in_app.command("cap")
    def walk_in_cap(
        product_code: str,
        daily_cap_qty: int = typer.Argument(..., min=0, help="in the product's smallest unit"),
        point: str | None = typer.Option(None, help="this point only; default: every point"),
        actor: str = "cardctl",
    ) -> None:
        """Set a walk-in product's cap per point per day (a point's own cap wins over the product's)."""
        from quota.walkin import WalkInService

        settings = get_settings()
        service = WalkInService(make_engine(settings.database_url), zone=settings.walk_in_zone,
                                default_cap_qty=settings.walk_in_daily_cap_qty)
        result = service.set_cap(product_code, daily_cap_qty, actor, point)
        if result != "ok":
            console.print(f"{product_code}: {result}")
            raise typer.Exit(1)
        console.print(f"walk-in cap of {product_code} at {point or 'every point'}: {daily_cap_qty} per day")

    @app.command("worker")
    def worker(
        once: bool = typer.Option(False, "--once", help="run each job once and exit"),
    ) -> None:
        """Background jobs: expire holds, send messages, seal the journal; stops on SIGTERM or Ctrl-C."""
        settings = get_settings()
        _log_to_stderr(settings)  # each new seal's line (the anchor trail) and every error, as JSON lines
        done = run_worker(settings, once=once)
        if done is not None:
            typer.echo(
                f"holds expired {done.holds_expired}, messages queued {done.messages_queued} sent "
                f"{done.messages_sent} failed {done.messages_failed}, seals {done.seals_made}, "
                f"grant blocks pruned {done.grant_blocks_pruned}, audit findings {done.audit_findings}"
            )

    @rules_app.command("load")
    def rules_load(path: Path, actor: str = "cardctl") -> None:
        """Load a rule file (YAML): new products are added, changed rules get a new version. Rules are checked
        as the admin API checks them: one refused (unknown or withdrawn product, unknown governorate, a code
        moved to another product...) loads nothing and exits 1."""
        ruleset = ruleset_from_yaml(path.read_text(encoding="utf-8"))
        settings = get_settings()
        factory = make_session_factory(make_engine(settings.database_url))
        try:
            with session_scope(factory) as session:
                products, versions = rules_repository.install(session, ruleset, actor, settings.governorates)
        except rules_repository.RuleRefused as exc:
            console.print(f"{path}: nothing loaded: {exc}")
            raise typer.Exit(1) from exc
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
                tz=settings.zone,
                now=datetime.now(UTC),
            )
        console.print(f"opened {report.rows} allowances")
        for d in report.deferred:  # opened ahead: left to the period's first day (the worker opens them)
            console.print(f"left to its first day: {d.rule_code} ({d.holder_type} {d.product}): {d.reason}")

    @period_app.command("prune-grants")
    def period_prune_grants(
        keep_days: int | None = typer.Option(None, min=0,
                                             help="default: CARD_GRANTS_KEEP_DAYS (0 with this: all ended)"),
    ) -> None:
        """Drop the stored grants of periods that ended over KEEP_DAYS ago and were followed by the next
        opening (their untouched holders are then no longer known to reports)."""
        from quota.opening import prune_grants

        settings = get_settings()
        factory = make_session_factory(make_engine(settings.database_url))
        keep = settings.grants_keep_days if keep_days is None else keep_days
        with session_scope(factory) as session:
            pruned = prune_grants(session, datetime.now(UTC), keep)
        console.print(f"pruned {pruned.runs} grant runs ({pruned.blocks} blocks) ended over {keep} days ago")

    @journal_app.command("seal")
    def journal_seal() -> None:
        """Seal every committed, unsealed journal entry into the hash chain; each new seal is logged (one
        line on stderr: its id, seqs and hash — an anchor to keep)."""
        _log_to_stderr(get_settings())
        ledger = _ledger()
        seals = ledger.seal()
        newest = f"; newest seal {seals[-1].id}, anchor {seals[-1].id}:{seals[-1].seal_hash}" if seals else ""
        console.print(f"{len(seals)} seals made{newest}")

    @journal_app.command("verify")
    def journal_verify(
        anchor: list[str] = typer.Option(
            [], "--anchor", metavar="ID:HASH",
            help="a seal kept outside the database (the head an earlier verify printed, or a seal log "
                 "line): the chain must still hold seal ID with exactly HASH; repeatable"),
    ) -> None:
        """Recompute the chain; name every changed, removed, inserted, reordered or unsealed entry, and
        every anchor the chain no longer holds (exit 1 if any). Prints the chain head verified: keep it
        outside the database and pass it as --anchor next time."""
        try:
            anchors = [Anchor.parse(a) for a in anchor]
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--anchor") from exc
        report = _ledger().verify(anchors)
        for f in report.findings:
            typer.echo(f"{f.kind} seq={f.seq} entry={f.entry_id} seal={f.seal_id} {f.detail}")
        held = f", {report.anchors_checked} anchors checked" if report.anchors_checked else ""
        typer.echo(
            f"journal {'ok' if report.ok else 'TAMPERED'}: {report.seals_checked} seals, "
            f"{report.entries_checked} entries checked{held}"
        )
        head = report.head
        if head is None:
            typer.echo("chain head: no seal yet")
        else:
            typer.echo(f"chain head: seal {head.seal_id} last_seq {head.last_seq} hash {head.seal_hash} "
                       f"(keep outside the database: --anchor {head.anchor})")
        if not report.ok:
            raise typer.Exit(1)


    @journal_app.command("reconcile")
    def journal_reconcile(
        limit: int = typer.Option(1000, min=1, help="list at most this many rows that disagree"),
    ) -> None:
        """Check every allowance against its journal and pending holds: name each row whose used or held
        the journal does not explain, or that is overdrawn (exit 1 if any)."""
        report = _ledger().reconcile(limit)
        for d in report.findings:
            f = d.figures
            typer.echo(f"{d.kind} allowance={f.allowance_id} holder={f.holder_type}:{f.holder_id} "
                       f"product={f.product_code} period_start={f.period_start.isoformat()} {d.detail}")
        more = " (more not listed: raise --limit)" if report.truncated else ""
        typer.echo(f"allowances {'ok' if report.ok else 'DISAGREE'}: {report.allowances_checked} checked, "
                   f"{len(report.findings)} findings{more}")
        if not report.ok:
            raise typer.Exit(1)

def _log_to_stderr(settings: Settings) -> None:
    """The API's logging (JSON lines unless ``CARD_LOG_JSON=false``) for a command that seals."""
    from card_backend.observability import configure_logging

    configure_logging(settings.log_json)


def _ledger() -> LedgerService:
    from quota.redemption import RuleTerms

    settings = get_settings()
    return LedgerService(make_engine(settings.database_url), RuleTerms(), None)


def run_worker(
    settings: Settings, *, once: bool = False, stop: threading.Event | None = None
) -> Round | None:
    """Build the jobs from the settings and run them: once (returns what they did) or until stopped.

    Without ``stop``, SIGTERM and SIGINT set one (the current job finishes first)."""
    from quota.notify import Notifier, make_sender
    from quota.redemption import RuleTerms
    from quota.worker import Worker

    db = make_engine(settings.database_url)
    ledger = LedgerService(db, RuleTerms(), None, hold_ttl_s=settings.hold_ttl_s)
    outbox = settings.messages_outbox_path
    if not settings.sms_gateway_url:
        outbox.parent.mkdir(parents=True, exist_ok=True)
    token = settings.sms_gateway_token.get_secret_value() if settings.sms_gateway_token else None
    notifier = Notifier(db, make_sender(settings.sms_gateway_url, token, outbox), zone=settings.zone)
    factory = make_session_factory(db)

    def open_periods() -> int:
        from quota.opening import open_due

        with session_scope(factory) as session:
            report = open_due(session, datetime.now(UTC), settings.governorates, tz=settings.zone)
        return report.rows if report is not None else 0

    def prune_grants() -> int:
        from quota.opening import prune_grants as prune

        with session_scope(factory) as session:
            return prune(session, datetime.now(UTC), settings.grants_keep_days).blocks

    jobs = Worker(ledger, notifier, holds_interval_s=settings.worker_holds_interval_s,
                  messages_interval_s=settings.worker_messages_interval_s,
                  seal_interval_s=settings.worker_seal_interval_s,
                  open_periods=open_periods if settings.worker_periods_interval_s > 0 else None,
                  periods_interval_s=settings.worker_periods_interval_s or 300.0,
                  prune_grants=prune_grants if settings.grants_keep_days > 0 else None,
                  audit_interval_s=settings.worker_audit_interval_s)
    try:
        if once:
            return jobs.run_once()
        event = stop or threading.Event()
        if stop is None:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: event.set())
        console.print("worker running; SIGTERM or Ctrl-C stops it")
        jobs.run(event)
        console.print("worker stopped")
        return None
    finally:
        db.dispose()
