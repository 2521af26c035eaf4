"""Bulk-load a benchmark population of allowances (one per holder) by binary COPY.

Used by ``make bench`` so (a) pgbench, (b) the engine and (c) HTTP all debit the same kind of rows.
Run: ``python -m loadtests.population URL --holders 1000000``.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import psycopg


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def load(url: str, holders: int, product: str = "gasoline", granted_qty: int = 10**12) -> float:
    start = time.perf_counter()
    now = datetime.now(UTC)
    with psycopg.connect(_plain(url)) as conn:
        conn.execute("TRUNCATE allowances, journal, seals, holds RESTART IDENTITY")
        with conn.cursor() as cur, cur.copy(
            "COPY allowances (id, holder_type, holder_id, product_code, rule_version_id, period_start,"
            " period_end, base_qty, granted_qty) FROM STDIN"
        ) as copy:
            for i in range(1, holders + 1):
                copy.write_row((i, "family", i, product, 1, now, None, granted_qty, granted_qty))
        conn.execute("SELECT setval(pg_get_serial_sequence('allowances','id'), %s)", (holders,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE allowances")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--holders", type=int, default=1_000_000)
    args = ap.parse_args()
    seconds = load(args.url, args.holders)
    print(f"# loaded {args.holders} allowances in {seconds:.1f} s")


if __name__ == "__main__":
    main()
