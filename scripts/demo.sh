#!/usr/bin/env bash
# make demo: a fresh embedded SQLite database, a synthetic population, the demo rule set and the current
# period opened, a demo admin, a virtual card and the reader agent, the background worker, and the API on
# 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export CARD_DATABASE_URL="${CARD_DATABASE_URL:-sqlite:///var/demo.sqlite3}"
FAMILIES="${DEMO_FAMILIES:-3000}"
mkdir -p var
if [[ "$CARD_DATABASE_URL" == sqlite:///var/demo.sqlite3 ]]; then rm -f var/demo.sqlite3*; fi

$BIN/cardctl db upgrade
$BIN/cardctl seed --families "$FAMILIES" --seed 42
$BIN/cardctl rules load quota/rulesets/demo.yaml
$BIN/cardctl period open
$BIN/cardctl walk-in cap gasoline 500000
password="$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(12))')"
CARDCTL_PASSWORD="$password" $BIN/cardctl user create admin --role admin >/dev/null
echo "demo admin: username=admin password=$password"
export DEMO_ADMIN_PASSWORD="$password"
echo "API and docs: http://127.0.0.1:8000/docs   clerk page (after the demo tap): http://127.0.0.1:8001"

cleanup() { jobs -p | xargs -r kill 2>/dev/null || true; }
trap cleanup EXIT INT TERM
if [ -x scripts/demo-tap.sh ]; then scripts/demo-tap.sh & fi
# The background jobs a deployment runs beside the API: tomorrow's bread opens at midnight, pump holds
# expire, the families' messages go to var/messages.outbox, the journal is sealed.
$BIN/cardctl worker > var/worker.log 2>&1 &
echo "background worker: log in var/worker.log"
exec_status=0
$BIN/cardctl serve --host 127.0.0.1 --port 8000 || exec_status=$?
exit $exec_status
