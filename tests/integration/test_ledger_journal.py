"""Sealed journal: tampering with raw SQL (alter, delete, insert, reorder) is named by verify."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Column, Engine, select, text, update

from card_backend.auth.principal import Role
from quota.engine import GroupCommitEngine
from quota.ledger_repository import JOURNAL
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


def other_value(column: Column[object], value: object) -> object:
    """A value of ``column``'s type (and length) that differs from ``value``."""
    kind = column.type.python_type
    if kind is datetime:
        return (value or NOW) + timedelta(seconds=1)  # type: ignore[operator]
    if kind is int:
        return 1 if value is None else int(value) + 1  # type: ignore[call-overload]
    if kind is str:
        return str(uuid.uuid4())[: getattr(column.type, "length", None)]
    raise AssertionError(f"journal column {column.name} of type {column.type}: give it a changed value")


def test_a_change_to_any_journal_column_is_named(engine: Engine) -> None:
    # every column of the table (a column added later too) but seq, which the seal binds by itself
    columns = [c for c in JOURNAL.columns if c.name != "seq"]
    svc = sealed_ledger(engine)
    for n, column in enumerate(columns):
        seq = 1 + n % 12  # spread over the three seals
        row = JOURNAL.c.seq == seq
        with engine.begin() as conn:
            was = conn.execute(select(column).where(row)).scalar_one()
            conn.execute(update(JOURNAL).where(row).values({column.name: other_value(column, was)}))
        found = [(f.kind, f.seq) for f in svc.verify().findings]
        assert found == [("changed", seq)], f"{column.name} changed at seq {seq}: {found}"
        with engine.begin() as conn:
            conn.execute(update(JOURNAL).where(row).values({column.name: was}))
        assert svc.verify().ok, f"{column.name} put back at seq {seq}"


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


def forge(engine: Engine, seq: int | None) -> str:
    """Insert by SQL a copy of entry 1 under a new entry id at ``seq`` (None: the next seq); its id."""
    with engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM journal WHERE seq = 1")).mappings().one()
        forged = dict(row, seq=seq, entry_id=str(uuid.uuid4()))
        if seq is None:
            del forged["seq"]
        cols = ", ".join(forged)
        conn.execute(text(f"INSERT INTO journal ({cols}) VALUES ({', '.join(':' + c for c in forged)})"),
                     forged)
    return str(forged["entry_id"])


def test_a_row_put_into_the_gap_between_two_seals_is_named(engine: Engine) -> None:
    svc = sealed_ledger(engine, gap_after=5)  # seqs 1..5 | 16..20 | 21..22: seal 2's range is 6..20
    assert svc.verify().ok  # the burnt seqs 6..15 are no finding
    entry_id = forge(engine, 10)
    report = svc.verify()
    found = [(f.kind, f.seq, f.seal_id, f.entry_id) for f in report.findings]
    assert found == [("inserted", 10, 2, entry_id)]
    assert report.entries_checked == 13


def test_seals_made_when_a_range_began_at_the_next_existing_seq_still_verify(engine: Engine) -> None:
    svc = sealed_ledger(engine, gap_after=5)
    with engine.begin() as conn:  # as the sealer stored it before ranges were contiguous
        conn.execute(text("UPDATE seals SET first_seq = 16 WHERE id = 2"))
    assert svc.verify().ok
    forge(engine, 7)
    assert {(f.kind, f.seq) for f in svc.verify().findings} == {("inserted", 7)}


def test_rows_at_seq_zero_or_below_are_named_unsealed(engine: Engine) -> None:
    svc = sealed_ledger(engine)
    zero, below = forge(engine, 0), forge(engine, -3)
    report = svc.verify()
    found = [(f.kind, f.seq, f.entry_id) for f in report.findings]
    assert found == [("unsealed", -3, below), ("unsealed", 0, zero)]
    assert report.entries_checked == 14
    assert svc.seal() == []  # the sealer never takes them in either


def test_a_group_rolled_back_between_two_seals_verifies_clean(engine: Engine) -> None:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        svc = LedgerService(engine, terms, eng, clock=lambda: NOW)
        for n in range(3):
            svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1 + n], "sugar", 100, "P1"))
        (first,) = svc.seal()
        with pytest.raises(RuntimeError), engine.begin() as conn:  # a group that fails after its INSERT
            row = conn.execute(text("SELECT * FROM journal WHERE seq = 1")).mappings().one()
            burnt = {k: v for k, v in row.items() if k != "seq"} | {"entry_id": str(uuid.uuid4())}
            conn.execute(text(f"INSERT INTO journal ({', '.join(burnt)}) "
                              f"VALUES ({', '.join(':' + c for c in burnt)})"), burnt)
            raise RuntimeError("group failed")
        for n in range(3):
            svc.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1 + n], "sugar", 200, "P1"))
    if engine.dialect.name == "sqlite":  # SQLite hands the rolled-back rowid out again: burn it as PG does
        with engine.begin() as conn:
            conn.execute(text("UPDATE journal SET seq = seq + 10 WHERE seq > 3"))
    (second,) = svc.seal()
    assert second.first_seq == first.last_seq + 1 == 4 and second.digests[0][0] > 4  # seq 4 was burnt
    report = svc.verify()
    assert report.ok and report.seals_checked == 2 and report.entries_checked == 6


def test_verify_over_http_and_cardctl_names_the_unsealed_row(
    engine: Engine, client: TestClient, auth: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    sealed_ledger(engine)
    entry_id = forge(engine, 0)
    v = client.get("/api/v1/journal/verify", headers=auth(Role.AUDITOR)).json()
    assert v["ok"] is False and v["entries_checked"] == 13
    assert [(f["kind"], f["seq"], f["entry_id"]) for f in v["findings"]] == [("unsealed", 0, entry_id)]
    env = {**os.environ, "CARD_DATABASE_URL": engine.url.render_as_string(hide_password=False)}
    run = subprocess.run([str(Path(sys.executable).with_name("cardctl")), "journal", "verify"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert f"unsealed seq=0 entry={entry_id} seal=None" in run.stdout
    assert "journal TAMPERED: 3 seals, 13 entries checked" in run.stdout
