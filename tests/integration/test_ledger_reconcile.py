"""Allowance rows against the journal and the holds: an edit of a row by SQL is named (invariants 1, 2).

The sealed journal shows any edit of itself; these tests edit the allowance rows beside it — a family's
``used`` set back so it can draw again, a ``held`` no pump hold explains — and expect ``reconcile`` (the
service, the auditor endpoint and ``cardctl journal reconcile``) to name each row with both figures, and
to stay quiet on a ledger that only the ledger wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, Population, seed

NOW = T0 + timedelta(days=2)


def busy_ledger(engine: Engine) -> tuple[LedgerService, Population, dict[int, int]]:
    """Redemptions, a reversal, a top-up, a pending pump hold and a voided one: every kind of movement
    the ledger writes. Returns the sugar allowance id of each family."""
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        first = None
        for n in range(9):
            card = pop.family_card[1 + n % 3]
            out = svc.redeem(Redemption(str(uuid.uuid4()), card, "sugar", 100 + n, "P1"))
            assert out.result == "ok", out
            first = first or out.entry_id
        assert first is not None
        assert svc.reverse(str(uuid.uuid4()), first, "wrong bag", "supervisor").result == "ok"
        assert svc.topup(str(uuid.uuid4()), "family", 2, "sugar", 500, "wedding", "admin").result == "ok"
        assert svc.hold("h-pending", pop.family_card[1], "diesel", 20_000, "P1").result == "ok"
        assert svc.hold("h-void", pop.family_card[2], "diesel", 10_000, "P1").result == "ok"
        assert svc.void("h-void", point="P1").result == "ok"
        assert svc.hold("h-post", pop.family_card[3], "diesel", 30_000, "P1").result == "ok"
        assert svc.post("h-post", 25_000, point="P1").result == "ok"
        # a gas cylinder, then another once the 23-day window has run out: the rolling row's used starts
        # again from its new window, while the journal keeps both fills
        for days in (0, 24):
            at = NOW + timedelta(days=days)
            gas = Redemption(str(uuid.uuid4()), pop.family_card[1], "gas", 1, "P1", now=at)
            assert svc.redeem(gas).result == "ok"
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT holder_id, id FROM allowances WHERE product_code = 'sugar'"))
                   .all())
    return svc, pop, {int(k): int(v) for k, v in ids.items()}


def test_a_ledger_only_the_ledger_wrote_reconciles(engine: Engine) -> None:
    svc, _, _ = busy_ledger(engine)
    report = svc.reconcile()
    assert report.ok and report.findings == [] and not report.truncated
    assert report.allowances_checked >= 4  # three families' sugar and the held diesel at least


def test_rows_edited_by_sql_are_named_with_both_figures(engine: Engine) -> None:
    svc, _, sugar = busy_ledger(engine)
    with engine.begin() as conn:
        used = conn.scalar(text("SELECT used_qty FROM allowances WHERE id = :i"), {"i": sugar[1]})
        # family 1 set back to nothing drawn; family 2 given a phantom hold; family 3 charged 50 g more
        # than it drew (overdrawing is refused by the table's own check, ck_allowances_within_grant)
        conn.execute(text("UPDATE allowances SET used_qty = 0 WHERE id = :i"), {"i": sugar[1]})
        conn.execute(text("UPDATE allowances SET held_qty = 300 WHERE id = :i"), {"i": sugar[2]})
        conn.execute(text("UPDATE allowances SET used_qty = used_qty + 50 WHERE id = :i"), {"i": sugar[3]})
    report = svc.reconcile()
    found = {(d.kind, d.figures.allowance_id): d for d in report.findings}
    assert set(found) == {("used_mismatch", sugar[1]), ("held_mismatch", sugar[2]),
                          ("used_mismatch", sugar[3])}
    f1 = found[("used_mismatch", sugar[1])].figures
    assert (f1.holder_type, f1.holder_id, f1.product_code) == ("family", 1, "sugar")
    assert f1.used_qty == 0 and f1.journal_used_qty == used > 0
    assert found[("held_mismatch", sugar[2])].figures.pending_held_qty == 0
    f3 = found[("used_mismatch", sugar[3])].figures
    assert f3.used_qty - f3.journal_used_qty == 50
    assert not report.ok
    few = svc.reconcile(limit=2)
    assert few.truncated and len({d.figures.allowance_id for d in few.findings}) == 2


def test_auditors_reconcile_over_http_and_cardctl_exits_1(
    engine: Engine, client: TestClient, auth: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    _, _, sugar = busy_ledger(engine)
    clean = client.get("/api/v1/journal/reconcile", headers=auth(Role.AUDITOR))
    assert clean.status_code == 200 and clean.json()["ok"] is True, clean.text
    assert client.get("/api/v1/journal/reconcile", headers=auth(Role.CLERK)).status_code == 403
    with engine.begin() as conn:
        conn.execute(text("UPDATE allowances SET used_qty = used_qty - 100 WHERE id = :i"), {"i": sugar[2]})
    body = client.get("/api/v1/journal/reconcile", headers=auth(Role.AUDITOR)).json()
    assert body["ok"] is False
    assert [(f["kind"], f["allowance_id"], f["journal_used_qty"] - f["used_qty"]) for f in body["findings"]] \
        == [("used_mismatch", sugar[2], 100)]
    env = {**os.environ, "CARD_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = subprocess.run([str(Path(sys.executable).with_name("cardctl")), "journal", "reconcile"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert f"used_mismatch allowance={sugar[2]} holder=family:2 product=sugar" in run.stdout
    assert "allowances DISAGREE" in run.stdout
