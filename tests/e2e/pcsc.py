"""Run the machine's one pcscd with our own vpcd readers, for tests and the demo.

pcsc-lite 1.9.9 ignores PCSCLITE_CSOCK_NAME, so there is one pcscd (one socket,
/run/pcscd/pcscd.comm) per machine. Every user of readers therefore takes an
exclusive flock on LOCK_PATH first, then starts `pcscd --foreground --config DIR`
as a child with a reader.conf.d folder of its own. Each vpcd entry yields two
slots, "<name> 00 00" on port P and "<name> 00 01" on port P+1, so two readers
need one entry (the Debian default: "Virtual PCD", 35963/35964).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOCK_PATH = Path("/tmp/smartcard-ledger-pcsc.lock")
PIDFILE = Path("/run/pcscd/pcscd.pid")
VPCD_DRIVER = Path(os.environ.get("SCL_VPCD_DRIVER", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))
BASE_PORT = 35963
SLOTS_PER_ENTRY = 2
START_TIMEOUT_S = 15.0
LOCK_TIMEOUT_S = float(os.environ.get("SCL_PCSC_LOCK_TIMEOUT_S", "600"))


class PcscUnavailableError(RuntimeError):
    """pcscd, the vpcd driver or pyscard is missing, or pcscd would not start."""


def missing_parts() -> list[str]:
    """What this machine lacks to run the real PC/SC stack (empty when all is there)."""
    missing = []
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        missing.append("pcscd (Debian package pcscd)")
    if not VPCD_DRIVER.exists():
        missing.append(f"{VPCD_DRIVER} (Debian package vsmartcard-vpcd)")
    try:
        import smartcard  # noqa: F401
    except ImportError:
        missing.append("pyscard (pip install pyscard; needs swig and libpcsclite-dev)")
    return missing


@dataclass(frozen=True)
class VirtualReader:
    name: str
    port: int


def plan_readers(count: int) -> list[VirtualReader]:
    """Reader names and vpcd ports for `count` slots (entry k: ports BASE+2k, BASE+2k+1)."""
    readers = []
    for index in range(count):
        entry, slot = divmod(index, SLOTS_PER_ENTRY)
        friendly = "Virtual PCD" if entry == 0 else f"Virtual PCD {chr(ord('A') + entry)}"
        readers.append(VirtualReader(f"{friendly} 00 {slot:02d}", BASE_PORT + index))
    return readers


def reader_conf(count: int) -> str:
    blocks = []
    for entry in range((count + SLOTS_PER_ENTRY - 1) // SLOTS_PER_ENTRY):
        friendly = "Virtual PCD" if entry == 0 else f"Virtual PCD {chr(ord('A') + entry)}"
        port = BASE_PORT + entry * SLOTS_PER_ENTRY
        blocks.append(
            f'FRIENDLYNAME "{friendly}"\nDEVICENAME   /dev/null:{port:#06x}\n'
            f"LIBPATH      {VPCD_DRIVER}\nCHANNELID    {port:#06x}\n"
        )
    return "\n".join(blocks)


def _die_with_parent() -> None:
    """In the child before exec: pcscd gets SIGTERM if the test process dies without cleaning up."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _pcscd_answers() -> bool:
    from reader_agent.reader import ReaderError, list_readers

    try:
        list_readers()
    except ReaderError:
        return False
    return True


def _running_pcscd_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().strip("\x00 \n\t"))
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


class PcscHarness:
    """`with PcscHarness(readers=2) as pcsc:` — lock, start pcscd, wait for the readers, stop."""

    def __init__(self, readers: int = 2, *, takeover: bool | None = None) -> None:
        self.readers = plan_readers(readers)
        if takeover is None:
            takeover = os.environ.get("CI") == "true" or os.environ.get("SCL_PCSCD_TAKEOVER") == "1"
        self.takeover = takeover
        self._lock_file: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    def __enter__(self) -> PcscHarness:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reader(self, index: int) -> VirtualReader:
        return self.readers[index]

    def start(self) -> None:
        missing = missing_parts()
        if missing:
            raise PcscUnavailableError("missing: " + "; ".join(missing) + " — run scripts/system-deps.sh")
        self._acquire_lock()
        try:
            if self._reuse_running_pcscd():
                return
            self._stop_foreign_pcscd()
            self._workdir = tempfile.TemporaryDirectory(prefix="scl-pcsc-")
            confdir = Path(self._workdir.name) / "reader.conf.d"
            confdir.mkdir()
            (confdir / "vpcd").write_text(reader_conf(len(self.readers)))
            self.log_path = Path(self._workdir.name) / "pcscd.log"
            with self.log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    ["pcscd", "--foreground", "--config", str(confdir)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            self._wait_for_readers()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = None

    def running(self) -> bool:
        if self._process is None:
            return _running_pcscd_pid() is not None
        return self._process.poll() is None

    def _acquire_lock(self) -> None:
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise PcscUnavailableError(
                        f"{LOCK_PATH} stayed locked for {LOCK_TIMEOUT_S:.0f} s"
                    ) from None
                time.sleep(0.2)
        self._lock_file = fd

    def _reuse_running_pcscd(self) -> bool:
        """A pcscd already serving our readers (e.g. left by a killed run) is used as it is, never killed.

        Asking pcscd itself (not its pid file, which a failed second pcscd deletes on exit) tells
        whether one is running.
        """
        from reader_agent.reader import ReaderError, list_readers

        try:
            seen = set(list_readers())
        except ReaderError:
            return False
        return {reader.name for reader in self.readers} <= seen

    def _stop_foreign_pcscd(self) -> None:
        """A pcscd we did not start holds the one socket; replace it only when allowed."""
        pid = _running_pcscd_pid()
        if pid is None:
            if _pcscd_answers():
                raise PcscUnavailableError(
                    "a pcscd without a pid file answers on /run/pcscd/pcscd.comm without our readers; stop it"
                )
            return
        if not self.takeover:
            raise PcscUnavailableError(
                f"a pcscd not started by this harness is running (pid {pid}); stop it, "
                "or set SCL_PCSCD_TAKEOVER=1 to let the tests restart it with their own readers"
            )
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _running_pcscd_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.1)

    def _wait_for_readers(self) -> None:
        from reader_agent.reader import ReaderError, list_readers

        wanted = {reader.name for reader in self.readers}
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: list[str] = []
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PcscUnavailableError(f"pcscd exited with {self._process.returncode}: {self.log()}")
            with contextlib.suppress(ReaderError):
                seen = list_readers()
                if wanted <= set(seen):
                    return
            time.sleep(0.1)
        raise PcscUnavailableError(f"pcscd did not list {sorted(wanted)} (saw {seen}): {self.log()}")

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-2000:]


def open_card_when_present(reader_name: str, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """Connect and SELECT as soon as pcscd has noticed the card (it polls vpcd)."""
    from reader_agent.reader import CardAbsentError, CardRemovedError, open_card

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return open_card(reader_name)
        except (CardAbsentError, CardRemovedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    """`python -m tests.e2e.pcsc --readers 2`: hold the lock and serve readers until Ctrl-C/SIGTERM."""
    import argparse
    import threading

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--readers", type=int, default=2)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with PcscHarness(args.readers) as harness:
        for reader in harness.readers:
            print(f"reader {reader.name!r} on vpcd port {reader.port}", flush=True)
        while not stop.wait(0.5) and harness.running():
            pass


if __name__ == "__main__":
    main()


@contextlib.contextmanager
def running_harness(readers: int = 2) -> Iterator[PcscHarness]:
    """pcscd with ``readers`` vpcd readers for a test or a package; a missing stack fails under CI=true
    (never skips there) and skips elsewhere, saying what is missing."""
    import pytest

    def unavailable(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PC/SC stack unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"PC/SC stack unavailable: {reason}")

    missing = missing_parts()
    if missing:
        unavailable("missing " + "; ".join(missing))
    harness = PcscHarness(readers=readers)
    try:
        harness.start()
    except PcscUnavailableError as exc:
        unavailable(str(exc))
    try:
        yield harness
    finally:
        harness.stop()
