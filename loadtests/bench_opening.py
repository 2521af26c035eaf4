"""Benchmark (d): open a monthly period for N families × 6 products, and simulate the same population.

Builds (once, cached in its own database) a synthetic registry of ``--families`` families with 1–8
members each, generated inside PostgreSQL; then measures, from a clean ``allowances`` table:

* ``open_period_1m``: read the population as columns, compute every family rule of the demo set with
  numpy, store the allowances (binary COPY in), commit — the median of ``--repeat`` openings from
  nothing opened, with the first and the slowest printed beside it;
* ``open_period_1m_next_month``: then December, as in service (carry-over read from November's grants,
  the yearly and rolling rules already open);
* ``simulate_1m``: the same computation on the columns in memory, summed by governorate and
  product, with the subsidy cost (no writing).

Prints ``bench <name> <value> <unit>`` lines (DESIGN.md), plus detail lines starting with ``#``.
Run: ``.venv/bin/python loadtests/bench_opening.py [--families 1000000] [--fresh]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from card_backend.config import SYRIA_GOVERNORATES
from card_backend.db import make_engine, make_session_factory
from card_backend.migrate import upgrade
from quota import opening, population, rules_repository
from quota.domain import entitlement
from quota.domain.rules import ruleset_from_yaml
from quota.domain.simulate import ProductPrice, simulate

ADMIN_URL = os.environ.get("CARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AT = datetime(2026, 11, 1, tzinfo=UTC)  # a month start inside the heating season: 6 family products
NEXT = datetime(2026, 12, 1, tzinfo=UTC)


def _url(db: str) -> str:
    return f"{ADMIN_URL.rpartition('/')[0]}/{db}"


def build(db: str, families: int, fresh: bool) -> str:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": db})
        if exists and fresh:
            conn.execute(text(f'DROP DATABASE "{db}" WITH (FORCE)'))
            exists = None
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    url = _url(db)
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        have = conn.scalar(text("SELECT count(*) FROM families"))
        if have != families:
            t = time.perf_counter()
            conn.execute(text("TRUNCATE families, persons, exclusions, products, rule_versions CASCADE"))
            govs = "ARRAY[" + ",".join(f"'{g}'" for g in SYRIA_GOVERNORATES) + "]"
            conn.execute(
                text(
                    "INSERT INTO families (id, book_number, governorate, address, status) "
                    f"SELECT g, 'B' || g, ({govs})[1 + g % {len(SYRIA_GOVERNORATES)}], '', 'active' "
                    "FROM generate_series(1, :n) g"
                ),
                {"n": families},
            )
            conn.execute(
                text(
                    "INSERT INTO persons (national_id, family_id, first_name_ar, last_name_ar, "
                    "first_name_en, last_name_en, birth_date, sex, relation, alive) "
                    "SELECT lpad((f * 10 + k)::text, 11, '0'), f, 'أ', 'ب', '', '', "
                    "DATE '1940-01-01' + ((f * 31 + k * 977) % 30000)::int, "
                    "CASE WHEN k % 2 = 0 THEN 'F' ELSE 'M' END, "
                    "CASE WHEN k = 1 THEN 'head' ELSE 'child' END, true "
                    "FROM generate_series(1::bigint, :n) f "
                    "CROSS JOIN LATERAL generate_series(1, (1 + (f * 7919) % 8)::int) k"
                ),
                {"n": families},
            )
            conn.execute(
                text(
                    "INSERT INTO exclusions (holder_type, holder_id, reason, since) "
                    "SELECT 'family', g, 'large_taxpayer', DATE '2022-01-01' FROM generate_series(7, :n, 7) g"
                ),
                {"n": families},
            )
            print(f"# built {families} families in {time.perf_counter() - t:.1f} s")
    # A registry in service has been vacuumed (autovacuum): its rows' visibility is settled, so the first
    # read does not pay for writing hint bits on every page of a freshly built table.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM (ANALYZE) families, persons, exclusions"))
    engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", type=int, default=1_000_000)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--db", default="bench_opening")
    parser.add_argument("--repeat", type=int, default=3, help="openings measured; the median is reported")
    args = parser.parse_args()
    url = build(args.db, args.families, args.fresh)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    rs = ruleset_from_yaml((Path(opening.__file__).parent / "rulesets" / "demo.yaml").read_text())
    family_rules = [r for r in rs.rules if r.holder_type == "family"]
    label = "1m" if args.families == 1_000_000 else f"{args.families}"
    runs: list[float] = []
    for n in range(1, args.repeat + 1):
        with factory.begin() as s:  # from nothing opened: the same opening each time
            s.execute(
                text(
                    "TRUNCATE allowances, allowance_grants, grant_runs, period_openings, products, "
                    "rule_versions RESTART IDENTITY"
                )
            )
            for p in rs.products:
                rules_repository.add_product(s, p)
            versions = [(rules_repository.add_version(s, r, "bench").id, r) for r in family_rules]
        t = time.perf_counter()
        with factory.begin() as s:
            report = opening.open_period(s, at=AT, rules=versions, governorates=SYRIA_GOVERNORATES)
        total = time.perf_counter() - t
        runs.append(total)
        print(
            f"# run {n}: opened {report.rows} allowances for {len(report.opened)} rules in {total:.2f} s: "
            f"population read {report.read_s:.2f} s, bulk load {report.load_s:.2f} s, "
            f"commit {total - report.seconds:.2f} s"
        )
    print(f"bench open_period_{label} {statistics.median(runs):.2f} s")
    print(f"bench open_period_{label}_first {runs[0]:.2f} s")
    print(f"bench open_period_{label}_slowest {max(runs):.2f} s")
    # The month after, as it is in service: November is open, so December carries sugar over from
    # November's grants and tops up the yearly and rolling rules (nobody new: nothing to add).
    t = time.perf_counter()
    with factory.begin() as s:
        nxt = opening.open_period(s, at=NEXT, rules=versions, governorates=SYRIA_GOVERNORATES)
    took = time.perf_counter() - t
    carried = sum(o.carried_qty for o in nxt.opened)
    print(f"# next month: {nxt.rows} allowances, {carried} carried over, in {took:.2f} s")
    print(f"bench open_period_{label}_next_month {took:.2f} s")

    with engine.connect() as conn:
        t = time.perf_counter()
        ages = entitlement.needs_member_ages(family_rules)
        pops = population.load(conn, {"family"}, date(2026, 11, 1), SYRIA_GOVERNORATES, ages=ages)
        read = time.perf_counter() - t
    prices = {p.code: ProductPrice(p.price_per_qty, p.free_price_minor) for p in rs.products}
    t = time.perf_counter()
    sim, _ = simulate(family_rules, pops, prices, AT)
    compute = time.perf_counter() - t
    totals = sim.totals()
    print(
        f"# population read {read:.2f} s; products {sorted(totals)}; "
        f"sugar subsidy {totals['family', 'sugar', 'month'].subsidy_minor} minor"
    )
    print(f"bench simulate_{label} {compute:.2f} s")
    print(f"bench population_read_{label} {read:.2f} s")
    engine.dispose()


if __name__ == "__main__":
    main()
