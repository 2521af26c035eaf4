"""docker-compose.yml validates with Debian's docker-compose (installed by scripts/system-deps.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_validates_and_declares_what_operations_rely_on() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: run scripts/system-deps.sh as root")
        pytest.skip("docker-compose not installed (scripts/system-deps.sh installs it)")
    env = {**os.environ, "CARD_DB_PASSWORD": "x", "CARD_JWT_SECRET": "y"}
    out = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    config = out.stdout
    assert "healthcheck" in config and "pg_isready" in config
    assert "pgdata" in config and "condition: service_healthy" in config
    # the background jobs run beside the API: without them tomorrow's bread never opens and pump holds
    # never expire
    worker = config.split("\n  worker:\n", 1)
    assert len(worker) == 2, "docker-compose.yml runs no worker service"
    assert "- cardctl\n    - worker" in worker[1] and "api:\n        condition: service_healthy" in worker[1]
    missing = subprocess.run(
        [tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env={k: v for k, v in env.items() if k != "CARD_DB_PASSWORD"},
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0 and "CARD_DB_PASSWORD" in missing.stderr
