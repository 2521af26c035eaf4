"""``cardctl import families`` and ``cardctl seed``: the registry's bulk commands, with progress bars."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)
import_app = typer.Typer(help="bulk imports", no_args_is_help=True)
PHASES = {"check": "checking duplicates", "insert": "finishing"}


def _engine_and_settings() -> tuple[Any, Any]:
    from card_backend.config import get_settings
    from card_backend.db import make_engine

    settings = get_settings()
    return make_engine(settings.database_url), settings


def _print_errors(report: dict[str, Any], limit: int = 20) -> None:
    table = Table("line", "field", "reason", title=f"{report['error_count']} error(s)")
    for e in report["errors"][:limit]:
        table.add_row(str(e["line"]), e["field"], e["reason"])
    console.print(table)
    if report["error_count"] > limit:
        console.print(f"… and {report['error_count'] - limit} more (use --report FILE.json for the list)")


@import_app.command("families")
def import_families(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="families CSV, one row per person"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="import valid families, skip bad ones"),
    report_path: Path | None = typer.Option(None, "--report", help="write the full JSON report here"),
) -> None:
    """Import families from CSV (columns: see card_backend/imports/csvformat.py). Any error imports
    nothing unless --skip-invalid."""
    from card_backend.db import make_session_factory, session_scope
    from card_backend.errors import ImportRejected
    from card_backend.imports.service import import_families as run

    engine, settings = _engine_and_settings()
    total = os.path.getsize(file)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    report: dict[str, Any]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("reading", total=total)

        def progress(phase: str, done: int, _total: int | None) -> None:
            if phase == "read":
                bar.update(task, completed=done)
            elif phase == "reread":
                bar.update(task, completed=0, description="errors found: reading again to name them")
            else:
                bar.update(task, description=PHASES.get(phase, phase))

        try:
            with session_scope(make_session_factory(engine)) as session, file.open("rb") as fh:
                result = run(
                    session,
                    settings,
                    fh,
                    actor="cli:" + os.environ.get("USER", "cardctl"),
                    source=file.name,
                    skip_invalid=skip_invalid,
                    total_bytes=total,
                    progress=progress,
                )
            report = result.model_dump()
        except ImportRejected as exc:
            report = exc.detail
    engine.dispose()
    if report_path is not None:
        report_path.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    if report["error_count"]:
        _print_errors(report)
    if not report["imported"]:
        console.print(f"[red]import_rejected[/red]: nothing imported from {file.name}")
        raise typer.Exit(1)
    console.print(
        f"imported {report['families_imported']} families, {report['persons_imported']} persons "
        f"in {report['seconds']} s (skipped {report['families_skipped']} families)"
    )


def seed(
    families: int = typer.Option(3000, "--families", min=1, help="how many families to make"),
    seed_value: int = typer.Option(1, "--seed", help="the same seed makes the same population"),
) -> None:
    """Generate a deterministic synthetic population: families, vehicles, licences, cards, points."""
    from card_backend.seed import seed_population

    engine, settings = _engine_and_settings()
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("seeding", total=families)
        made = seed_population(
            engine,
            settings,
            families=families,
            seed=seed_value,
            progress=lambda done: bar.update(task, completed=done),
        )
    engine.dispose()
    table = Table("made", "count", title=f"seed {seed_value}")
    for name, count in made.items():
        table.add_row(name, str(count))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.command("seed")(seed)
