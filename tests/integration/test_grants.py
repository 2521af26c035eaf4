"""Grants: how PostgreSQL stores an opened period until the ledger touches an allowance (issue 3, d).

What goes in comes back the same through every reader (period columns for carry-over and top-ups,
a holder's allowances for the quota view and explain), a first touch turns exactly one grant into
a row, and rows that would not fit the compact form (sparse ids, huge quantities) are written as
ordinary allowances instead.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text

from card_backend.config import Settings
from card_backend.db import make_session_factory
from quota import grant_repository, ledger_repository, opening_repository
from quota.cli import run_worker
from quota.opening import open_period
from quota.opening_repository import Rows
from tests.integration.ledger_seed import store_opened
from tests.integration.rules_seed import seed_registry, seed_rules

pytestmark = pytest.mark.postgres
START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=30)
PRODUCTS = ("sugar", "rice", "tea")


def _batches(rng: np.random.Generator, holders: int) -> list[Rows]:
    out = []
    for slot, product in enumerate(PRODUCTS):
        ids = np.sort(rng.choice(np.arange(1, holders + 1), size=holders * 2 // 3, replace=False))
        base = rng.integers(1, 50_000, size=len(ids))
        carried = rng.integers(0, 3, size=len(ids)) * 500 if slot == 1 else np.zeros(len(ids), np.int64)
        extra = rng.integers(0, 2, size=len(ids)) * 1_000
        out.append(Rows("family", product, 10 + slot, START, END, ids, base, base + extra + carried, carried))
    return out


def test_every_reader_sees_what_the_opening_stored(pg_engine: Engine) -> None:
    batches = _batches(np.random.default_rng(3), 2_000)
    with pg_engine.begin() as conn:
        store_opened(conn, batches, START)
        assert conn.scalar(text("SELECT count(*) FROM allowances")) == 0
        assert conn.scalar(text("SELECT count(*) FROM grant_runs")) == 1
    with pg_engine.connect() as conn:
        for rows in batches:
            ids, base, granted, carried = grant_repository.period_columns(
                conn, "family", rows.product_code, START
            )
            assert ids.tolist() == rows.holder_ids.tolist()
            assert base.tolist() == rows.base_qty.tolist()
            assert granted.tolist() == rows.granted_qty.tolist()
            assert carried.tolist() == rows.carried_qty.tolist()
        for holder in (1, 2, 777, 2_000):
            seen = {
                s.product_code: (s.base_qty, s.granted_qty, s.carried_qty, s.used_qty, s.rule_version_id)
                for s in ledger_repository.allowances_of_holder(conn, "family", holder)
            }
            expected = {}
            for rows in batches:
                at = np.flatnonzero(rows.holder_ids == holder)
                if len(at):
                    i = int(at[0])
                    expected[rows.product_code] = (int(rows.base_qty[i]), int(rows.granted_qty[i]),
                                                   int(rows.carried_qty[i]), 0, rows.rule_version_id)
            assert seen == expected


def test_a_touch_makes_one_row_and_readers_then_read_the_row(pg_engine: Engine) -> None:
    batches = _batches(np.random.default_rng(5), 300)
    sugar = batches[0]
    holder = int(sugar.holder_ids[0])
    with pg_engine.begin() as conn:
        store_opened(conn, batches, START)
    now = START + timedelta(days=3)
    with pg_engine.begin() as conn:
        states = ledger_repository.lock_current_allowances(conn, [("family", holder, "sugar")], now)
        state = states[("family", holder, "sugar")]
        assert state.id > 0 and state.granted_qty == int(sugar.granted_qty[0]) and state.used_qty == 0
        ledger_repository.write_allowances(conn, [state._replace(used_qty=700)])
    with pg_engine.begin() as conn:  # a second touch finds the row, makes no other
        again = ledger_repository.lock_current_allowances(conn, [("family", holder, "sugar")], now)
        assert again[("family", holder, "sugar")].used_qty == 700
        assert conn.scalar(text("SELECT count(*) FROM allowances")) == 1
    with pg_engine.connect() as conn:
        every = ledger_repository.allowances_of_holder(conn, "family", holder)
        mine = [s for s in every if s.product_code == "sugar"]
        assert [(s.id > 0, s.used_qty) for s in mine] == [(True, 700)]
        hid, _, _, _, used, _ = opening_repository.previous_rows(conn, "family", "sugar", START)
        assert hid.tolist() == sugar.holder_ids.tolist()  # touched and untouched, once each
        assert used[hid == holder].tolist() == [700] and int(used.sum()) == 700
    # a touch after the period ended makes nothing: the grant is not live
    with pg_engine.begin() as conn:
        late = ledger_repository.lock_current_allowances(
            conn, [("family", int(sugar.holder_ids[1]), "sugar")], END + timedelta(hours=1)
        )
        assert late == {}
        assert conn.scalar(text("SELECT count(*) FROM allowances")) == 1


def test_rows_that_do_not_fit_grants_are_written_as_allowances(pg_engine: Engine) -> None:
    sparse = np.array([1, 10_000_000, 20_000_000], dtype=np.int64)
    huge = np.array([1, 2, 3], dtype=np.int64)
    ones = np.ones(3, dtype=np.int64)
    with pg_engine.begin() as conn:
        store_opened(conn, [Rows("family", "sugar", 1, START, END, sparse, ones, ones, ones * 0)], START)
        store_opened(
            conn, [Rows("vehicle", "gasoline", 2, START, END, huge, ones, ones * 2**33, ones * 0)], START
        )
        assert conn.scalar(text("SELECT count(*) FROM grant_runs")) == 0
        assert conn.scalar(text("SELECT count(*) FROM allowances")) == 6
        got = ledger_repository.allowances_of_holder(conn, "vehicle", 2)
        assert [s.granted_qty for s in got] == [2**33]


def test_block_size_keeps_a_block_in_line() -> None:
    for slots in (1, 6, 7, 40, 500):
        size = grant_repository.block_size(slots)
        assert size >= 8 and size & (size - 1) == 0
        assert size == 8 or size * slots * 4 <= 1792


def test_two_openers_of_one_period_store_it_once(pg_engine: Engine) -> None:
    factory = make_session_factory(pg_engine)
    with factory.begin() as s:
        seed_registry(s)
        seed_rules(s)
    at = datetime(2026, 11, 18, 12, tzinfo=UTC)

    def opener(_: int) -> int:
        with factory.begin() as s:
            return open_period(s, at=at).rows

    with ThreadPoolExecutor(2) as pool:
        rows = sorted(pool.map(opener, range(2)))
    assert rows[0] == 0 and rows[1] > 0  # the second waited, then found everything opened
    with pg_engine.connect() as conn:
        runs = conn.execute(text("SELECT holder_type, count(*) FROM grant_runs GROUP BY 1")).all()
        assert all(n == 1 for _, n in runs) and runs


def test_populations_with_and_without_gaps_share_a_run(pg_engine: Engine) -> None:
    """A gapless population is placed as a slice, a sparse one by scatter, in the same blocks."""
    sparse = np.array([1, 5, 150], dtype=np.int64)
    gapless = np.arange(300, 420, dtype=np.int64)
    every = np.arange(1, 420, dtype=np.int64)
    allotted = (every % 3) != 0
    batches = [
        Rows("family", "sugar", 1, START, END, sparse, sparse * 10, sparse * 10, sparse * 0),
        Rows("family", "rice", 2, START, END, gapless, gapless + 7, gapless + 7, gapless * 0),
        Rows("family", "tea", 3, START, END, every, np.where(allotted, every, 0),
             np.where(allotted, every, 0), every * 0, allotted=allotted),
    ]
    with pg_engine.begin() as conn:
        store_opened(conn, batches, START)
        assert conn.scalar(text("SELECT count(*) FROM grant_runs")) == 1
    with pg_engine.connect() as conn:
        for rows in batches:
            compact = rows.compact()
            ids, base, granted, _ = grant_repository.period_columns(conn, "family", rows.product_code, START)
            assert ids.tolist() == compact.holder_ids.tolist()
            assert granted.tolist() == compact.granted_qty.tolist() == base.tolist()
        states = ledger_repository.allowances_of_holder(conn, "family", 301)
        seen = {s.product_code: s.granted_qty for s in states}
        assert seen == {"rice": 308, "tea": 301}


def test_prune_drops_only_runs_that_ended_and_were_followed(pg_engine: Engine) -> None:
    """Retention: a month's grants go once it ended before the cut-off and the next month was opened
    (its carry-over read them); the rows the ledger made stay, and the opening says it was pruned."""
    nov = _batches(np.random.default_rng(11), 500)
    dec_start, dec_end = END, END + timedelta(days=31)
    dec = [Rows("family", r.product_code, r.rule_version_id, dec_start, dec_end, r.holder_ids, r.base_qty,
                r.granted_qty, r.carried_qty) for r in nov]
    touched = int(nov[0].holder_ids[0])
    with pg_engine.begin() as conn:
        store_opened(conn, nov, START)
        key = ("family", touched, "sugar")
        ledger_repository.lock_current_allowances(conn, [key], START + timedelta(days=2))  # materialised
    with pg_engine.begin() as conn:  # December not opened yet: November must stay (carry-over)
        assert grant_repository.prune(conn, dec_end, dec_end) == grant_repository.Pruned(0, 0)
        store_opened(conn, dec, dec_start)
    pruned_at = dec_start + timedelta(days=5)
    with pg_engine.begin() as conn:  # a cut-off before November ended prunes nothing either
        assert grant_repository.prune(conn, END - timedelta(seconds=1), pruned_at).runs == 0
        pruned = grant_repository.prune(conn, END, pruned_at)
    assert pruned.runs == 1 and pruned.blocks > 0
    with pg_engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM grant_runs")) == 1
        ids, _, _, _ = grant_repository.period_columns(conn, "family", "sugar", START)
        assert ids.tolist() == []
        hid, *_ = opening_repository.previous_rows(conn, "family", "sugar", START)
        assert hid.tolist() == [touched]  # the row the ledger made is kept
        ids, _, _, _ = grant_repository.period_columns(conn, "family", "sugar", dec_start)
        assert ids.tolist() == dec[0].holder_ids.tolist()
        assert opening_repository.grants_pruned_at(conn, "family", "sugar", START) == pruned_at
        assert opening_repository.grants_pruned_at(conn, "family", "sugar", dec_start) is None
        assert {s.period_start for s in ledger_repository.allowances_of_holder(conn, "family", touched)
                if s.product_code == "sugar"} == {START, dec_start}


def test_the_worker_prunes_grants_past_their_retention(pg_engine: Engine, tmp_path: Path) -> None:
    jan, feb, mar = (datetime(2025, m, 1, tzinfo=UTC) for m in (1, 2, 3))
    batches = _batches(np.random.default_rng(13), 200)
    with pg_engine.begin() as conn:
        for start, end in ((jan, feb), (feb, mar)):
            store_opened(conn, [Rows("family", r.product_code, r.rule_version_id, start, end, r.holder_ids,
                                     r.base_qty, r.granted_qty, r.carried_qty) for r in batches], start)
    url = pg_engine.url.render_as_string(hide_password=False)
    kept = run_worker(Settings(database_url=url, jwt_secret="w" * 48, grants_keep_days=0,
                               messages_outbox_path=tmp_path / "m.txt"), once=True)
    assert kept is not None and kept.grant_blocks_pruned == 0  # 0: keep for ever
    done = run_worker(Settings(database_url=url, jwt_secret="w" * 48, grants_keep_days=30,
                               messages_outbox_path=tmp_path / "m.txt"), once=True)
    assert done is not None and done.grant_blocks_pruned > 0  # January went; February has no successor
    with pg_engine.connect() as conn:
        assert opening_repository.grants_pruned_at(conn, "family", "sugar", jan) is not None
        assert opening_repository.grants_pruned_at(conn, "family", "sugar", feb) is None
