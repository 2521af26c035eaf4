"""What ``reconcile`` names for one allowance row, given its figures (quota.domain.audit)."""

from __future__ import annotations

from datetime import UTC, datetime

from quota.domain.audit import AllowanceFigures, discrepancies

ROW = AllowanceFigures(allowance_id=7, holder_type="family", holder_id=3, product_code="sugar",
                       period_start=datetime(2026, 11, 1, tzinfo=UTC), granted_qty=4000, used_qty=300,
                       held_qty=100, journal_used_qty=300, pending_held_qty=100)


def kinds(row: AllowanceFigures) -> list[str]:
    return [d.kind for d in discrepancies(row)]


def test_a_row_the_journal_and_holds_explain_is_fine() -> None:
    assert kinds(ROW) == []
    assert kinds(ROW._replace(used_qty=3900)._replace(journal_used_qty=3900)) == []  # full, not over


def test_each_disagreement_is_named_with_both_figures() -> None:
    assert kinds(ROW._replace(used_qty=0)) == ["used_mismatch"]
    (d,) = discrepancies(ROW._replace(held_qty=0))
    assert d.kind == "held_mismatch" and d.detail == "held 0, pending holds 100"
    assert kinds(ROW._replace(granted_qty=350)) == ["overdrawn"]
    assert kinds(ROW._replace(used_qty=-5, journal_used_qty=-5)) == ["overdrawn"]
    assert kinds(ROW._replace(used_qty=5000, held_qty=0)) == ["used_mismatch", "held_mismatch", "overdrawn"]
