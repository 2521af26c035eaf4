"""`python -m reader_agent.demo` (what `make demo` runs for its tap) against a live API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.pcsc import PcscHarness
from tests.e2e.stack import PASSWORD, Stack


def test_demo_tap_personalises_registers_taps_and_prints_a_receipt(
    pcsc: PcscHarness, stack: Stack, tmp_path: Path
) -> None:
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reader_agent.demo",
            "--api",
            stack.server.url,
            "--username",
            "e2e-admin",
            "--password",
            PASSWORD,
            "--state-dir",
            str(tmp_path / "cards"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "stays in" in line:
                break
        output = "".join(lines)
        assert "demo tap: card F000001 at point P1" in output, output + (
            demo.stderr.read() if demo.poll() else ""
        )
        assert "تمت العملية" in output and "(ok)" in output
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=20)
    assert demo.returncode == 0
    redeemed = next(line for line in lines if "redeeming" in line).split()  # "... redeeming N of PRODUCT"
    quantity, product = int(redeemed[-3]), redeemed[-1]
    assert stack.quota("F000001", product)["used_qty"] == quantity
