#!/usr/bin/env bash
# make load: the locust scenarios (clerks, citizens, administrators) against a local API on PostgreSQL.
# Headless with CSV output by default; LOAD_UI=1 serves locust's web UI on 127.0.0.1:8089 instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
ADMIN_URL="${CARD_BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"
URL="${ADMIN_URL%/*}/load"
PORT="${LOAD_PORT:-8010}"
USERS="${LOAD_USERS:-60}"
DURATION="${LOAD_DURATION:-60s}"
OUT=var/load
psql -q "${ADMIN_URL/postgresql+psycopg/postgresql}" -c "DROP DATABASE IF EXISTS load WITH (FORCE)" -c "CREATE DATABASE load"
$BIN/python -m loadtests.load_setup "$URL" --families "${LOAD_FAMILIES:-20000}" --out "$OUT"
CARD_DATABASE_URL="$URL" CARD_LOG_JSON=true $BIN/uvicorn card_backend.asgi:app --host 127.0.0.1 --port "$PORT" \
  --workers 2 --log-level warning --no-access-log > "$OUT/api.log" 2>&1 &
api=$!
trap 'kill $api 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null && break; sleep 0.2; done
export LOAD_DIR="$OUT" LOAD_ADMIN=admin LOAD_ADMIN_PASSWORD="$(cat $OUT/admin.txt)"
if [ "${LOAD_UI:-0}" = 1 ]; then
  $BIN/locust -f loadtests/locustfile.py --host "http://127.0.0.1:$PORT" --web-host 127.0.0.1
else
  $BIN/locust -f loadtests/locustfile.py --host "http://127.0.0.1:$PORT" --headless -u "$USERS" -r 20 \
    -t "$DURATION" --csv "$OUT/locust" --only-summary 2>&1 | grep -v "^\[" | tail -40
  echo "# CSV: $OUT/locust_stats.csv"
fi
