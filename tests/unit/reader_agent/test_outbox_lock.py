"""One process per outbox: a second agent, clerk page or sync on an outbox that a running agent holds is
refused at once and changes nothing, so it can never turn the running agent's signed, in-flight
debits into "undelivered" reversal advice (the family would get the goods twice). The lock goes with
the holder: after it exits, or crashes, the outbox opens again and recovers as before."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reader_agent.agent import PointAgent
from reader_agent.client import BackendClient
from reader_agent.outbox import Outbox, OutboxBusy

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
NOWHERE = "http://127.0.0.1:9"  # no backend: the agent would just serve offline

# A running agent mid-tap: one redemption created (card not asked yet), one signed (answer pending).
HOLDER = """
import sys
from pathlib import Path
from reader_agent.outbox import Outbox

box = Outbox(Path(sys.argv[1]))
box.create("r-created", "F1", "sugar", 1000, "P1", "online")
box.create("r-signed", "F1", "sugar", 500, "P1", "online")
box.signed("r-signed", 7, b"\\x01" * 64)
print("ready", flush=True)
sys.stdin.readline()
"""


def _rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT * FROM outbox ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    path = tmp_path / "agent" / "outbox.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    try:
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def test_a_second_agent_process_is_refused_and_the_running_agents_rows_stay_as_they_are(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = holder
    before = _rows(path)
    assert {row[0]: row[8] for row in before} == {"r-created": "created", "r-signed": "signed"}

    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "reader_agent.cli",
            "agent",
            "--backend",
            NOWHERE,
            "--token",
            "dev_x",
            "--point",
            "P1",
            "--outbox",
            str(path),
            "--script",
            "-",
        ],
        input="",
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=60,
    )

    assert second.returncode == 1
    assert f"outbox {path} is in use by another process (PID {proc.pid})" in second.stderr
    assert f"صندوق الصادر {path} مستخدم من عملية أخرى (PID {proc.pid})" in second.stderr
    assert _rows(path) == before  # nothing recovered, nothing touched
    assert proc.poll() is None


def test_opening_the_outbox_beside_a_running_agent_raises_before_recovering(
    holder: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, path = holder
    before = _rows(path)
    with pytest.raises(OutboxBusy) as busy:
        PointAgent(BackendClient(NOWHERE, "dev_x"), Outbox(path), "P1")
    assert (busy.value.path, busy.value.holder_pid) == (path, proc.pid)
    assert _rows(path) == before


@pytest.mark.parametrize("end", ["exits", "crashes"])
def test_after_the_holder_ends_a_new_agent_opens_and_recovers_the_outbox(
    holder: tuple[subprocess.Popen[str], Path], end: str
) -> None:
    proc, path = holder
    if end == "exits":
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    box = Outbox(path)
    try:
        agent = PointAgent(BackendClient(NOWHERE, "dev_x"), box, "P1")
        assert agent.recovered == {"abandoned": 1, "in_doubt": 1}
        assert {row[0]: row[8] for row in _rows(path)} == {"r-created": "abandoned", "r-signed": "in_doubt"}
    finally:
        box.close()


def test_a_second_outbox_in_the_same_process_is_refused_until_the_first_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path)
    with pytest.raises(OutboxBusy) as busy:
        Outbox(path)
    assert busy.value.holder_pid == os.getpid()
    first.close()
    Outbox(path).close()
