"""Benchmark (b): the redemption engine through its Python API, against raw batched SQL.

Builds a fresh PostgreSQL database with 1,000,000 holders (cards and allowances loaded by COPY),
then measures, each for ``--seconds``:

- ``engine_redeem`` (b): 32 concurrent callers each keeping ``--window`` requests in flight (an HTTP
  server with many connections, or agents flushing outboxes), so groups fill up;
- ``engine_redeem_one_in_flight``: the same 32 callers each waiting for its answer before the next
  request (one reader agent's shape); groups then hold at most 32 items;
- ``engine_redeem_first_touch``: (b) again on allowances still stored as an opening's grants, so
  nearly every redemption is a holder's first of the period and makes its allowance row;
- ``batched_sql``: raw SQL debiting as many holders per transaction as the engine's groups held in the
  same run (one UPDATE … FROM unnest and one multi-row INSERT per transaction, as many connections as
  engine writers) — the ceiling the engine is compared with.

Prints ``bench <name> <value> <unit>`` lines and ``ratio (b)/batched-sql <x>`` (DESIGN.md aims at
≥ 0.9). Run: ``.venv/bin/python -m loadtests.bench_engine`` (``CARD_BENCH_PG_URL`` picks the server).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
from sqlalchemy import create_engine, text

from card_backend.db import make_engine
from card_backend.migrate import upgrade
from quota import ledger_repository, opening_repository
from quota.domain.terms import PeriodKind, PriceTier, Terms
from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms

ADMIN_URL = os.environ.get("CARD_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
START = datetime(2026, 11, 1, tzinfo=UTC)
NOW = START + timedelta(days=3)
TERMS = Terms(rule_version_id=1, product_code="sugar", period_kind=PeriodKind.MONTH, price_per_qty=1000,
              tiers=(PriceTier("subsidised", 350),))
POINTS = 200
# The same rule with issue 9's per-redemption checks switched on (fill cap, minimum gap, point binding):
# they read and write the same allowance row, so they must cost next to nothing.
FIELDED = Terms(rule_version_id=1, product_code="sugar", period_kind=PeriodKind.MONTH, price_per_qty=1000,
                tiers=(PriceTier("subsidised", 350),), fill_cap_qty=50_000, min_gap_s=1,
                binding_max_changes=2)


def create_database(name: str) -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = ADMIN_URL.rpartition("/")[0] + "/" + name
    upgrade(url)
    return url


def populate(url: str, holders: int) -> None:
    """Products, points, one rule version, then cards and allowances by COPY."""
    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO products (code, name_ar, name_en, unit, price_per_qty, free_price_minor, "
                    "walk_in, active) VALUES ('sugar', 'سكر', 'Sugar', 'g', 1000, 0, false, true)")
        cur.execute("INSERT INTO rule_versions (id, code, version, product_code, holder_type, body, "
                    "effective_from, created_by) "
                    "VALUES (1, 'sugar', 1, 'sugar', 'family', '{}', %s, 'bench')", (date(2026, 1, 1),))
        for p in range(POINTS):
            cur.execute("INSERT INTO points (code, name_ar, name_en, kind, governorate, products, active) "
                        "VALUES (%s, 'م', 'P', 'state_outlet', 'damascus', '[\"sugar\"]', true)", (f"P{p}",))
        buf = io.StringIO()
        for h in range(1, holders + 1):
            buf.write(f"C{h:08d}\tfamily\t{h}\tactive\t\t0\n")
        with cur.copy("COPY cards (serial, holder_type, holder_id, state, state_reason, last_counter) "
                      "FROM STDIN") as copy:
            copy.write(buf.getvalue())
        buf = io.StringIO()
        start, end = START.isoformat(), (START + timedelta(days=30)).isoformat()
        for h in range(1, holders + 1):
            buf.write(f"{h}\tfamily\t{h}\tsugar\t1\t{start}\t{end}\t1000000000\t1000000000\n")
        with cur.copy("COPY allowances (id, holder_type, holder_id, product_code, rule_version_id, "
                      "period_start, period_end, base_qty, granted_qty) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def store_as_grants(url: str, holders: int) -> None:
    """Replace the allowance rows by the grants a period opening stores (one run, one slot): every
    holder's first redemption then makes its row, as on the first days of a real period."""
    engine = make_engine(url)
    ids = np.arange(1, holders + 1, dtype=np.int64)
    qty = np.full(holders, 1_000_000_000, dtype=np.int64)
    end = START + timedelta(days=30)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE allowances, journal, holds, allowance_grants, grant_runs, "
                          "period_openings RESTART IDENTITY"))
        rows = opening_repository.Rows("family", "sugar", 1, START, end, ids, qty, qty, qty * 0)
        (run_id, slot), = opening_repository.insert_new(conn, [rows], START).values()
        opening_repository.record_opening(
            conn, holder_type="family", product_code="sugar", rule_code="sugar", rule_version_id=1,
            period_start=START, period_end=end, rows=holders, carried_qty=0, points=0, opened_at=START,
            opened_by="bench", run_id=run_id, slot=slot)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE allowances, allowance_grants, period_openings"))
    engine.dispose()


def run_engine(url: str, holders: int, seconds: float, callers: int, window: int, writers: int,
               max_items: int, terms: Terms = TERMS) -> tuple[float, float]:
    """Redemptions/s and mean group size for ``callers`` threads keeping ``window`` requests in flight."""
    db = make_engine(url, pool_size=writers + 2)
    engine = GroupCommitEngine(db, StaticTerms([terms]), writers=writers, max_items=max_items,
                               max_wait_ms=1.0, clock=lambda: NOW).start()
    done = [0] * callers
    stop = time.monotonic() + seconds

    run = uuid.uuid4().hex[:12]

    def caller(n: int) -> None:
        rng = random.Random(n)
        sent = 0
        while time.monotonic() < stop:
            holders_ = [rng.randint(1, holders) for _ in range(window)]
            # each holder always at its own point, so binding holds; every answer counts (a rare
            # too_soon for a holder drawn twice within a second is work done too). Ids are the run's
            # prefix and a counter: uuid4 per request (a urandom call each) cost the generator, which
            # shares the engine's two cores, ~8 % of the process's CPU.
            batch = [Redemption(f"{run}-{n}-{sent + i}", f"C{h:08d}", "sugar", 1000, f"P{h % POINTS}")
                     for i, h in enumerate(holders_)]
            sent += len(batch)
            outcomes = engine.redeem_many(batch) if window > 1 else [engine.redeem(batch[0])]
            done[n] += len(outcomes)

    before = engine.stats
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    stats = engine.stats
    engine.stop()
    db.dispose()
    groups = stats.groups - before.groups
    print(f"# {groups} groups, {1000 * (stats.busy_s - before.busy_s) / max(groups, 1):.1f} ms per group "
          f"in its transaction, {elapsed:.1f} s", flush=True)
    return sum(done) / elapsed, (stats.items - before.items) / max(groups, 1)


def run_batched_sql(url: str, holders: int, seconds: float, group: int, connections: int) -> float:
    """Raw SQL: ``group`` holders debited per transaction (UPDATE … FROM unnest + multi-row INSERT)."""
    dsn = url.replace("postgresql+psycopg", "postgresql")
    done = [0] * connections
    stop = time.monotonic() + seconds

    run = uuid.uuid4().hex[:12]

    def worker(n: int) -> None:
        rng = random.Random(1000 + n)
        with psycopg.connect(dsn) as conn:
            while time.monotonic() < stop:
                ids = sorted(rng.sample(range(1, holders + 1), group))
                entry_ids = [f"{run}-{n}-{done[n] + i}" for i in range(len(ids))]  # as the engine's callers
                with conn.transaction():
                    conn.execute(
                        "UPDATE allowances a SET used_qty = a.used_qty + 1000, last_redeemed_at = %s "
                        "FROM unnest(%s::bigint[]) AS u(id) WHERE a.id = u.id "
                        "AND a.used_qty + a.held_qty + 1000 <= a.granted_qty",
                        (NOW, ids),
                    )
                    conn.execute(
                        "INSERT INTO journal (entry_id, kind, result, allowance_id, holder_type, holder_id, "
                        "product_code, point_code, card_serial, quantity_qty, price_minor, remaining_qty, "
                        "payload_hash, created_at) SELECT e, 'redeem', 'ok', i, 'family', i, 'sugar', 'P1', "
                        "'C', 1000, 350, 0, 'x', %s FROM unnest(%s::text[], %s::bigint[]) AS u(e, i)",
                        (NOW, entry_ids, ids),
                    )
                done[n] += group

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - began)


def time_lookups(url: str, holders: int, samples: int = 50) -> tuple[float, float, int]:
    """Median ms of a family's draw history (newest 200) and of the already-reversed check, on the
    journal the runs above wrote; and its size. Both are indexed (migration 0008): before, each was a
    scan of the whole journal."""
    engine = make_engine(url)
    rng = random.Random(5)
    draws: list[float] = []
    reversals: list[float] = []
    with engine.connect() as conn:
        entries = int(conn.execute(text("SELECT count(*) FROM journal")).scalar_one())
        for _ in range(samples):
            began = time.perf_counter()
            ledger_repository.family_draws(conn, rng.randint(1, holders), 200)
            draws.append(time.perf_counter() - began)
            began = time.perf_counter()
            ledger_repository.reversals_of(conn, uuid.uuid4().hex)
            reversals.append(time.perf_counter() - began)
    engine.dispose()
    return 1000 * statistics.median(draws), 1000 * statistics.median(reversals), entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--max-items", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()
    name = f"bench_engine_{os.getpid()}"
    began = time.monotonic()
    url = create_database(name)
    populate(url, args.holders)
    print(f"# population of {args.holders} holders built in {time.monotonic() - began:.1f} s", flush=True)
    one, one_group = run_engine(url, args.holders, args.seconds, args.callers, 1, args.writers,
                                args.max_items)
    print(f"bench engine_redeem_one_in_flight {one:.0f} redemptions/s", flush=True)
    print(f"bench engine_redeem_one_in_flight_group {one_group:.1f} items", flush=True)
    same = run_batched_sql(url, args.holders, args.seconds, max(1, round(one_group)), args.writers)
    print(f"bench batched_sql_one_in_flight_group {same:.0f} redemptions/s", flush=True)
    print(f"ratio one-in-flight/batched-sql {one / same:.2f}", flush=True)
    rate, group = run_engine(url, args.holders, args.seconds, args.callers, args.window, args.writers,
                             args.max_items)
    print(f"bench engine_redeem {rate:.0f} redemptions/s", flush=True)
    print(f"bench engine_redeem_group {group:.1f} items", flush=True)
    sql = run_batched_sql(url, args.holders, args.seconds, max(1, round(group)), args.writers)
    print(f"bench batched_sql {sql:.0f} redemptions/s", flush=True)
    print(f"ratio (b)/batched-sql {rate / sql:.2f}", flush=True)
    fielded, _ = run_engine(url, args.holders, args.seconds, args.callers, args.window, args.writers,
                            args.max_items, FIELDED)
    print(f"bench engine_redeem_fielded_checks {fielded:.0f} redemptions/s", flush=True)
    print(f"ratio fielded/(b) {fielded / rate:.2f}", flush=True)
    draws_ms, reversal_ms, entries = time_lookups(url, args.holders)
    print(f"# lookups on a journal of {entries} entries", flush=True)
    print(f"bench family_draws {draws_ms:.2f} ms", flush=True)
    print(f"bench reversal_check {reversal_ms:.2f} ms", flush=True)
    store_as_grants(url, args.holders)
    first, _ = run_engine(url, args.holders, args.seconds, args.callers, args.window, args.writers,
                          args.max_items)
    print(f"bench engine_redeem_first_touch {first:.0f} redemptions/s", flush=True)
    print(f"ratio first-touch/(b) {first / rate:.2f}", flush=True)
    if not args.keep:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
