#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers on 127.0.0.1:5432; start the local cluster if it is down.
set -euo pipefail
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then exit 0; fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] && pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
fi
echo "PostgreSQL is not answering on 127.0.0.1:5432 (the PostgreSQL tests will fail, not skip)." >&2
echo "Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start" >&2
exit 0
