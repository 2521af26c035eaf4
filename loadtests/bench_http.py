"""Benchmark (c): the HTTP redemption endpoint next to a bare FastAPI endpoint doing one query.

Both are served by uvicorn with the same settings (``--workers``) against the same PostgreSQL population
of 1,000,000 holders, and driven by ``wrk`` (C, so the load generator is not what saturates) with a Lua
script that makes a unique redemption id per request. Then the real endpoint is driven at half of its peak
rate (wrk's ``delay()`` paces each connection) to read p50/p99 latency there.

Prints ``bench http_redeem_peak``, ``bench http_bare_peak``, ``bench http_redeem_p50_half_peak``,
``bench http_redeem_p99_half_peak`` and ``ratio (c)/bare``.
Run: ``.venv/bin/python -m loadtests.bench_http`` (``CARD_BENCH_PG_URL`` picks the server).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from card_backend.auth.security import new_device_token, token_sha256
from loadtests.bench_engine import create_database, populate
from tests.chaos.cluster import free_port, wait_port

HERE = Path(__file__).resolve().parent
RULE = {
    "code": "sugar",
    "product": "sugar",
    "holder_type": "family",
    "amount": {"base_qty": 1_000_000_000},
    "period": {"kind": "month"},
    "tiers": [{"name": "subsidised", "price_minor": 350}],
    "effective_from": "2020-01-01",
}


def prepare(url: str, holders: int) -> str:
    populate(url, holders)
    token = new_device_token()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("UPDATE rule_versions SET body = %s WHERE id = 1", (json.dumps(RULE),))
        conn.execute(
            "UPDATE allowances SET period_start = now() - interval '1 day',"
            " period_end = now() + interval '29 days'"
        )
        conn.execute(
            "INSERT INTO devices (point_id, name, token_sha256) "
            "SELECT id, 'bench', %s FROM points WHERE code = 'P0'",
            (token_sha256(token),),
        )
        conn.commit()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE allowances")
    return token


def serve(app: str, url: str, workers: int, holders: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {
        **os.environ,
        "CARD_DATABASE_URL": url,
        "CARD_BENCH_HOLDERS": str(holders),
        "CARD_JWT_SECRET": "bench-" + "x" * 40,
        "CARD_LOG_JSON": "true",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port(port)
    time.sleep(1.5)  # every worker up
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def wrk(
    port: int, path: str, seconds: int, connections: int, token: str = "", delay_ms: float = 0
) -> dict[str, float]:
    env = {
        **os.environ,
        "PATH_": path,
        "TOKEN": token,
        "DELAY_MS": str(delay_ms),
        "PRODUCT": "sugar",
        "POINT": "P0",
    }
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "redeem.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    m = re.search(r"WRK rps=([\d.]+) p50_ms=([\d.]+) p99_ms=([\d.]+) errors=(\d+) requests=(\d+)", out)
    if m is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    rps, p50, p99, errors, requests = (float(g) for g in m.groups())
    return {"rps": rps, "p50": p50, "p99": p99, "errors": errors, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="alternating real/bare rounds (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    url = create_database("bench_http")
    token = prepare(url, args.holders)
    # Rounds alternate the two servers, so a slower minute of this shared machine falls on both: the
    # ratio is the median of the rounds' ratios (one round each gave 0.56 and 0.75 on the same code).
    reals: list[dict[str, float]] = []
    bares: list[dict[str, float]] = []
    half: dict[str, float] = {}
    for round_ in range(args.rounds):
        proc, port = serve("card_backend.asgi:app", url, args.workers, args.holders)
        try:
            wrk(port, "/api/v1/redemptions", 3, args.connections, token)  # warm-up
            reals.append(wrk(port, "/api/v1/redemptions", args.seconds, args.connections, token))
            if round_ == args.rounds - 1:
                half_rate = statistics.median(r["rps"] for r in reals) / 2
                delay = args.connections * 1000.0 / half_rate
                half = wrk(port, "/api/v1/redemptions", args.seconds, args.connections, token, delay_ms=delay)
        finally:
            stop(proc)
        proc, port = serve("loadtests.bare_app:app", url, args.workers, args.holders)
        try:
            wrk(port, "/bare", 3, args.connections)
            bares.append(wrk(port, "/bare", args.seconds, args.connections))
        finally:
            stop(proc)
    ratios = [r["rps"] / b["rps"] for r, b in zip(reals, bares, strict=True)]
    print(
        f"# wrk -t2 -c{args.connections} -d{args.seconds}s, uvicorn --workers {args.workers}, {args.rounds} "
        f"alternating rounds; errors real={sum(r['errors'] for r in reals):.0f} "
        f"bare={sum(b['errors'] for b in bares):.0f}; round ratios {', '.join(f'{x:.2f}' for x in ratios)}"
    )
    print(f"bench http_redeem_peak {statistics.median(r['rps'] for r in reals):.0f} requests/s")
    print(f"bench http_bare_peak {statistics.median(b['rps'] for b in bares):.0f} requests/s")
    print(f"bench http_redeem_half_peak_rate {half['rps']:.0f} requests/s")
    print(f"bench http_redeem_p50_half_peak {half['p50']:.1f} ms")
    print(f"bench http_redeem_p99_half_peak {half['p99']:.1f} ms")
    print(f"ratio (c)/bare {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
