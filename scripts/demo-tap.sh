#!/usr/bin/env bash
# One tap through the real PC/SC stack against the demo API, then the clerk page on 127.0.0.1:8001.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m reader_agent.demo  # the admin password comes in DEMO_ADMIN_PASSWORD
