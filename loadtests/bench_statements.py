"""Where (b)'s PostgreSQL time goes: each statement of a redemption group timed alone, per item.

Builds (or reuses, ``--db``) the 1,000,000-holder population of ``bench_engine``, then runs ``--groups``
groups of ``--size`` random holders through the group commit's own statements (``quota.ledger_pg``), one
at a time on one connection, each group in its own committed transaction, and prints the mean wall time
per item of each as ``bench stmt_<name> <µs> us/item`` (the client's share is small: documents are built
before the clock starts). Run: ``.venv/bin/python -m loadtests.bench_statements``.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import timedelta

import orjson
import psycopg

from loadtests.bench_engine import ADMIN_URL, NOW, POINTS, create_database, populate
from quota import ledger_pg as pg
from quota.grant_repository import MATERIALISE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=40)
    parser.add_argument("--size", type=int, default=400)
    parser.add_argument("--db", default="", help="reuse a database (--keep leaves bench_statements)")
    parser.add_argument("--keep", action="store_true", help="keep the database it built")
    args = parser.parse_args()
    if args.db:
        url = ADMIN_URL.rpartition("/")[0] + "/" + args.db
    else:
        url = create_database("bench_statements")
        populate(url, args.holders)
    conn = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
    rng = random.Random(7)
    run = uuid.uuid4().hex[:10]
    spent: dict[str, float] = {}

    def timed(name: str, sql: str, params: dict[str, object]) -> None:
        began = time.perf_counter()
        cur = conn.execute(sql, params)
        if cur.description:
            cur.fetchall()
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - began

    def doc(value: object) -> str:
        return orjson.dumps(value).decode()

    end = (NOW + timedelta(days=26)).isoformat()
    for g in range(args.groups):
        holders = sorted(rng.sample(range(1, args.holders + 1), args.size))
        keys = doc([{"t": "family", "i": h, "p": "sugar"} for h in holders])
        ids = [f"{run}-{g}-{i}" for i in range(args.size)]
        rows = doc([[h, NOW.isoformat(), end, 10**9, 1000 * (g + 1), 0, 0, 0, NOW.isoformat(), None, 0]
                    for h in holders])
        journal = doc([[e, "redeem", "ok", h, "family", h, "sugar", f"P{h % POINTS}", f"C{h:08d}", 1000, 350,
                        5, "x" * 64, None, None, None, NOW.isoformat()]
                       for e, h in zip(ids, holders, strict=True)])
        with conn.transaction():
            timed("cards", pg._CARDS, {"serials": doc([f"C{h:08d}" for h in holders])})
            timed("materialise", MATERIALISE, {"keys": keys, "now": NOW})
            timed("lock", pg._LOCK_ALLOWANCES, {"keys": keys, "now": NOW})
            timed("entries", pg._ENTRIES, {"ids": doc(ids)})
            timed("update", pg._UPDATE_ALLOWANCES, {"doc": rows})
            timed("journal", pg._INSERT_JOURNAL, {"doc": journal})
            began = time.perf_counter()
        spent["commit"] = spent.get("commit", 0.0) + time.perf_counter() - began
    items = args.groups * args.size
    for name, seconds in spent.items():
        print(f"bench stmt_{name} {seconds / items * 1e6:.1f} us/item", flush=True)
    print(f"bench stmt_total {sum(spent.values()) / items * 1e6:.1f} us/item", flush=True)
    conn.close()
    if not args.db and not args.keep:
        with psycopg.connect(ADMIN_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
            admin.execute('DROP DATABASE IF EXISTS "bench_statements" WITH (FORCE)')


if __name__ == "__main__":
    main()
