"""Sealed journal: tampering with raw SQL (alter, delete, insert, reorder) is named by verify."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine, text

from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, seed

NOW = T0 + timedelta(days=2)


def sealed_ledger(engine: Engine, gap_after: int | None = None) -> LedgerService:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        for n in range(12):
            svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1 + n % 3], "sugar", 100 + n, "P1"))
    if gap_after is not None:  # seqs skipped by rolled-back groups, as PostgreSQL sequences do
        with engine.begin() as conn:
            conn.execute(text("UPDATE journal SET seq = seq + 10 WHERE seq > :n"), {"n": gap_after})
    seals = svc.seal(max_entries=5)
    assert [s.entry_count for s in seals] == [5, 5, 2]
    assert (seals[1].first_seq, seals[1].last_seq) == ((6, 10) if gap_after is None else (6, 20))
    assert svc.seal() == []
    return svc


def test_untouched_journal_verifies(engine: Engine) -> None:
    report = sealed_ledger(engine).verify()
    assert report.ok and report.seals_checked == 3 and report.entries_checked == 12


def test_altered_deleted_inserted_and_reordered_entries_are_named(engine: Engine) -> None:
    svc = sealed_ledger(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE journal SET quantity_qty = 5000 WHERE seq = 3"))
        conn.execute(text("DELETE FROM journal WHERE seq = 7"))
        row = conn.execute(text("SELECT * FROM journal WHERE seq = 11")).mappings().one()
        forged = dict(row, seq=7, entry_id=str(uuid.uuid4()))
        conn.execute(text("DELETE FROM journal WHERE seq = 11"))
        cols = ", ".join(forged)
        conn.execute(text(f"INSERT INTO journal ({cols}) VALUES ({', '.join(':' + c for c in forged)})"),
                     forged)
        # move entry 12 to seq 11 (a reordering of what was sealed)
        conn.execute(text("UPDATE journal SET seq = 11 WHERE seq = 12"))
    found = {(f.kind, f.seq) for f in svc.verify().findings}
    assert ("changed", 3) in found
    assert ("changed", 7) in found  # a different row now sits where 7 was
    assert ("reordered", 11) in found and ("removed", 12) in found


def test_deleted_then_inserted_rows_are_each_named(engine: Engine) -> None:
    svc = sealed_ledger(engine, gap_after=8)  # seqs 1..8 and 19..22
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM journal WHERE seq = 2"))
    assert {(f.kind, f.seq) for f in svc.verify().findings} == {("removed", 2)}
    with engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM journal WHERE seq = 1")).mappings().one()
        forged = dict(row, seq=12, entry_id=str(uuid.uuid4()), quantity_qty=1)
        cols = ", ".join(forged)
        conn.execute(text(f"INSERT INTO journal ({cols}) VALUES ({', '.join(':' + c for c in forged)})"),
                     forged)
    assert {(f.kind, f.seq) for f in svc.verify().findings} == {("removed", 2), ("inserted", 12)}


def test_forged_seal_breaks_the_chain(engine: Engine) -> None:
    svc = sealed_ledger(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE seals SET entries_hash = :h WHERE id = 2"), {"h": "ab" * 32})
    assert ("seal_broken", 6) in {(f.kind, f.seq) for f in svc.verify().findings}
