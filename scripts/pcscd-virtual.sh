#!/bin/sh
# Run pcscd in the foreground with N vpcd readers ("Virtual PCD 00 00" on 35963, "00 01" on 35964, ...),
# holding /tmp/smartcard-ledger-pcsc.lock so tests and the demo never fight over the one pcscd.
# Ctrl-C stops pcscd and releases the lock.  Usage: scripts/pcscd-virtual.sh [READERS]
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" -m tests.e2e.pcsc --readers "${1:-2}"
