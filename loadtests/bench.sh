#!/usr/bin/env bash
# make bench: every figure in one run, from empty PostgreSQL databases, as `bench <name> <value> <unit>`
# and `ratio <x>/<y> <value>` lines (DESIGN.md). The whole output is also kept in var/bench.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
ADMIN_URL="${CARD_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
BASE="${ADMIN_URL%/*}"
PSQL_URL="${ADMIN_URL/postgresql+psycopg/postgresql}"
mkdir -p var
out=var/bench.txt
: > "$out"
say() { echo "$@" | tee -a "$out"; }
run() { echo "# \$ $*" | tee -a "$out"; "$@" 2>&1 | tee -a "$out"; }

# (a) the naive design: one transaction per redemption, pgbench -c 32 -j 2 -T 30, 1 M holders.
psql -q "$PSQL_URL" -c "DROP DATABASE IF EXISTS bench_naive WITH (FORCE)" -c "CREATE DATABASE bench_naive"
CARD_DATABASE_URL="$BASE/bench_naive" .venv/bin/cardctl db upgrade >/dev/null
run $PY -m loadtests.population "$BASE/bench_naive" --holders 1000000
say "# \$ pgbench -n -f loadtests/pgbench_naive.sql -c 32 -j 2 -T ${BENCH_PGBENCH_SECONDS:-30} bench_naive"
tps=$(pgbench -h 127.0.0.1 -U postgres -n -f loadtests/pgbench_naive.sql -c 32 -j 2 \
      -T "${BENCH_PGBENCH_SECONDS:-30}" bench_naive 2>&1 | awk '/^tps/ {print int($3)}')
say "bench pgbench_naive $tps redemptions/s"

# (b) the engine through its Python API, 32 concurrent callers, 1 M holders; batched raw SQL beside it.
CARD_BENCH_PG_URL="$ADMIN_URL" run $PY -m loadtests.bench_engine
# Where (b)'s PostgreSQL time goes: each statement of a group timed alone, per item.
CARD_BENCH_PG_URL="$ADMIN_URL" run $PY -m loadtests.bench_statements
# (c) the HTTP endpoint next to a bare FastAPI endpoint, wrk, same uvicorn settings.
CARD_BENCH_PG_URL="$ADMIN_URL" run $PY -m loadtests.bench_http
# (d) opening a monthly period for 1 M families x 6 products, and a simulation over them.
CARD_TEST_PG_URL="$ADMIN_URL" run $PY -m loadtests.bench_opening --fresh
# Registry import: 1 M families from CSV into PostgreSQL, streaming.
CARD_BENCH_PG_URL="$ADMIN_URL" run $PY -m loadtests.bench_import
# Tap to receipt through the real PC/SC stack, and the agent's headless throughput.
if [ -f loadtests/bench_tap.py ]; then run $PY -m loadtests.bench_tap; fi

b=$(awk '$1=="bench" && $2=="engine_redeem" {print $3}' "$out")
if [ -n "$b" ] && [ -n "$tps" ] && [ "$tps" -gt 0 ]; then
  say "ratio (b)/(a) $(awk -v b="$b" -v a="$tps" 'BEGIN {printf "%.2f", b/a}')"
fi
echo "# summary" | tee -a "$out"
grep -E '^(bench|ratio) ' "$out"
