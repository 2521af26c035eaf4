"""Allowance rows reset by SQL so a family draws its period twice: ``reconcile`` names each way.

``used`` set back alone is named by ``test_ledger_reconcile``; these edits hide the first draw from the
old check, which joined each debit to its row and counted from the row's ``period_start``:

- the row re-keyed (``UPDATE allowances SET id = id + 1000, used_qty = 0``) or deleted (on PostgreSQL the
  grant then makes a fresh row): the debits point at an id no row has — ``allowance_missing``;
- a calendar row's ``period_start`` moved past its debits: a calendar row has one period, so every debit
  counts — ``window_moved`` and ``used_mismatch``;
- a rolling row's ``period_start`` moved past its debits to a time no movement of the row explains (a
  window starts only at the fill or hold that opens it, or the top-up or change of station that closes
  an ended one) — ``window_moved``, and ``used`` is checked from the window the journal explains.

And a rolling row restarted by every movement that may restart it stays clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota.domain.audit import Discrepancy
from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, TERMS, Population, seed

LATER = NOW + timedelta(hours=2)
MONTH = 5000  # family 1's sugar: 4000 base + 1000


@pytest.fixture
def ledger(engine: Engine) -> Iterator[tuple[LedgerService, Population]]:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        yield LedgerService(engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW), pop


def draw(svc: LedgerService, pop: Population, product: str, qty: int, at: datetime) -> str:
    return svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1], product, qty, "P1", now=at)).result


def row_of(engine: Engine, product: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text("SELECT id FROM allowances WHERE holder_id = 1 AND product_code = :p "
                                    "ORDER BY period_start DESC LIMIT 1"), {"p": product}))


def findings(svc: LedgerService) -> dict[tuple[str, int], Discrepancy]:
    report = svc.reconcile()
    assert report.ok is not bool(report.findings)
    return {(d.kind, d.figures.allowance_id): d for d in report.findings}


def month_drawn(engine: Engine, svc: LedgerService, pop: Population) -> int:
    assert draw(svc, pop, "sugar", MONTH, NOW) == "ok"
    assert draw(svc, pop, "sugar", 1, NOW) == "exceeds_allowance"
    assert svc.reconcile().ok
    return row_of(engine, "sugar")


def test_a_rekeyed_row_is_named_by_its_old_id(
    engine: Engine, ledger: tuple[LedgerService, Population]
) -> None:
    svc, pop = ledger
    old = month_drawn(engine, svc, pop)
    with engine.begin() as conn:
        conn.execute(text("UPDATE allowances SET id = id + 1000, used_qty = 0 WHERE id = :i"), {"i": old})
    assert draw(svc, pop, "sugar", MONTH, LATER) == "ok"  # the month again
    found = findings(svc)
    assert set(found) == {("allowance_missing", old)}
    f = found[("allowance_missing", old)].figures
    assert (f.holder_type, f.holder_id, f.product_code, f.row_exists) == ("family", 1, "sugar", False)
    assert (f.used_qty, f.journal_used_qty) == (0, MONTH)
    assert found[("allowance_missing", old)].detail == f"no allowance row, journal {MONTH}"


def test_a_deleted_row_is_named(engine: Engine, ledger: tuple[LedgerService, Population]) -> None:
    svc, pop = ledger
    old = month_drawn(engine, svc, pop)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM allowances WHERE id = :i"), {"i": old})
    found = findings(svc)
    assert set(found) == {("allowance_missing", old)}
    assert found[("allowance_missing", old)].figures.journal_used_qty == MONTH


def test_pg_a_deleted_row_the_grant_makes_afresh_is_named(pg_engine: Engine) -> None:
    pop = seed(pg_engine, grants=True)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(pg_engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(pg_engine, terms, eng, clock=lambda: NOW)
        old = month_drawn(pg_engine, svc, pop)
        with pg_engine.begin() as conn:
            conn.execute(text("DELETE FROM allowances WHERE id = :i"), {"i": old})
        assert draw(svc, pop, "sugar", MONTH, LATER) == "ok"  # made again from the grant, nothing used
        fresh = row_of(pg_engine, "sugar")
        assert fresh != old
        found = findings(svc)
    assert set(found) == {("allowance_missing", old)}
    assert found[("allowance_missing", old)].figures.journal_used_qty == MONTH


def test_a_calendar_rows_start_moved_past_its_debits_is_named(
    engine: Engine, ledger: tuple[LedgerService, Population]
) -> None:
    svc, pop = ledger
    row = month_drawn(engine, svc, pop)
    with engine.begin() as conn:
        conn.execute(text("UPDATE allowances SET used_qty = 0, period_start = :s WHERE id = :i"),
                     {"i": row, "s": NOW + timedelta(seconds=1)})
    assert draw(svc, pop, "sugar", MONTH, LATER) == "ok"
    found = findings(svc)
    assert set(found) == {("window_moved", row), ("used_mismatch", row)}
    f = found[("used_mismatch", row)].figures
    assert (f.used_qty, f.journal_used_qty) == (MONTH, 2 * MONTH)  # a calendar row counts every debit
    assert f.journal_window_start == NOW
    assert found[("window_moved", row)].detail == (
        f"period_start {(NOW + timedelta(seconds=1)).isoformat()}, journal window from {NOW.isoformat()}")


def test_a_rolling_rows_start_moved_past_its_fill_is_named(
    engine: Engine, ledger: tuple[LedgerService, Population]
) -> None:
    svc, pop = ledger
    assert draw(svc, pop, "gas", 1, NOW) == "ok"  # the cylinder of a 23-day window
    assert draw(svc, pop, "gas", 1, NOW) == "exceeds_allowance"
    row = row_of(engine, "gas")
    with engine.begin() as conn:  # the window "starts" a second later: the fill falls outside it
        conn.execute(text("UPDATE allowances SET used_qty = 0, period_start = :s WHERE id = :i"),
                     {"i": row, "s": NOW + timedelta(seconds=1)})
    assert draw(svc, pop, "gas", 1, LATER) == "ok"  # a second cylinder in the same window
    found = findings(svc)
    assert set(found) == {("window_moved", row), ("used_mismatch", row)}
    f = found[("used_mismatch", row)].figures
    assert (f.used_qty, f.journal_used_qty, f.journal_window_start) == (1, 2, NOW)


def test_a_rolling_row_restarted_by_every_movement_that_may_restart_it_reconciles(
    engine: Engine, ledger: tuple[LedgerService, Population]
) -> None:
    """A fill opens the window; a change of station, then a top-up, closes an ended one; a hold opens
    one and its void closes it again; a reversal of the window's only fill closes it too. Each leaves
    debits before the row's new start, explained by the journal."""
    svc, pop = ledger
    day = timedelta(days=1)

    def clean() -> None:
        report = svc.reconcile()
        assert report.ok, [(d.kind, d.detail) for d in report.findings]

    assert draw(svc, pop, "gas", 1, NOW) == "ok"
    moved = svc.rebind(str(uuid.uuid4()), "family", 1, "gas", "P2", "registrar", now=NOW + 24 * day)
    assert moved.result == "ok"
    clean()
    assert draw(svc, pop, "gas", 1, NOW + 25 * day) == "ok"
    clean()
    assert svc.topup(str(uuid.uuid4()), "family", 1, "gas", 1, "travel", "registrar",
                     now=NOW + 49 * day).result == "ok"
    clean()
    hold = str(uuid.uuid4())
    assert svc.hold(hold, pop.family_card[1], "gas", 1, "P1", now=NOW + 50 * day).result == "ok"
    clean()
    assert svc.void(hold, now=NOW + 50 * day + timedelta(minutes=1)).result == "ok"
    clean()
    fill = svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1], "gas", 1, "P1", now=NOW + 51 * day))
    assert fill.result == "ok"
    assert svc.reverse(str(uuid.uuid4()), fill.entry_id, "not handed over", "supervisor",
                       now=NOW + 51 * day + timedelta(hours=1)).result == "ok"
    clean()
    assert draw(svc, pop, "gas", 1, NOW + 52 * day) == "ok"
    clean()
    with engine.connect() as conn:
        start, used = conn.execute(text("SELECT period_start, used_qty FROM allowances WHERE id = :i"),
                                   {"i": row_of(engine, "gas")}).one()
        before = conn.scalar(text("SELECT count(*) FROM journal WHERE allowance_id = :i AND result = 'ok' "
                                  "AND kind IN ('redeem', 'reverse') AND created_at < :s"),
                             {"i": row_of(engine, "gas"), "s": start})
    assert used == 1 and before == 4  # the row's earlier windows are all in the journal


def test_auditors_see_a_missing_row_over_http_and_cardctl_exits_1(
    engine: Engine, client: TestClient, auth: Callable[..., dict[str, str]], pop: Population, tmp_path: Path
) -> None:
    svc: LedgerService = client.app.state.ledger  # type: ignore[attr-defined]
    old = month_drawn(engine, svc, pop)
    with engine.begin() as conn:
        conn.execute(text("UPDATE allowances SET id = id + 1000, used_qty = 0 WHERE id = :i"), {"i": old})
    body = client.get("/api/v1/journal/reconcile", headers=auth(Role.AUDITOR)).json()
    assert body["ok"] is False
    assert [(f["kind"], f["allowance_id"], f["row_exists"], f["used_qty"], f["journal_used_qty"])
            for f in body["findings"]] == [("allowance_missing", old, False, 0, MONTH)]
    env = {**os.environ, "CARD_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = subprocess.run([str(Path(sys.executable).with_name("cardctl")), "journal", "reconcile"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert f"allowance_missing allowance={old} holder=family:1 product=sugar" in run.stdout
    assert f"no allowance row, journal {MONTH}" in run.stdout
