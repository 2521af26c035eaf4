"""`python -m reader_agent.demo` (what `make demo` runs for its tap) against a live API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.pcsc import PcscHarness
from tests.e2e.server import free_port
from tests.e2e.stack import PASSWORD, Stack


def _get_when_up(url: str, timeout_s: float = 15) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_demo_tap_personalises_registers_taps_and_prints_a_receipt(
    pcsc: PcscHarness, stack: Stack, tmp_path: Path
) -> None:
    clerk_port = free_port()
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
            "--clerk-port",
            str(clerk_port),
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
            if "clerk page on" in line:
                break
        output = "".join(lines)
        assert "demo tap: card F000001 at point P1" in output, output + (
            demo.stderr.read() if demo.poll() else ""
        )
        assert "تمت العملية" in output and "(ok)" in output
        page = _get_when_up(f"http://127.0.0.1:{clerk_port}/")
        assert 'dir="rtl"' in page and "Virtual PCD 00 00" in page
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=20)
    assert demo.returncode == 0
    redeemed = next(line for line in lines if "redeeming" in line).split()  # "... redeeming N of PRODUCT"
    quantity, product = int(redeemed[-3]), redeemed[-1]
    assert stack.quota("F000001", product)["used_qty"] == quantity
