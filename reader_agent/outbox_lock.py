"""One process per outbox: an exclusive ``flock`` on ``<outbox>.lock``, held for the process's life.

Opening an outbox recovers it (``created`` → abandoned, ``signed`` → in doubt). A second process
recovering an outbox that a running agent is tapping with would turn that agent's in-flight signed
debits into "undelivered" reversal advice at the next sync, and the family would get the goods twice.
So the outbox is locked before SQLite is even opened, without waiting: a second agent, clerk page or
sync on the same file is refused at once and changes nothing. The kernel drops the lock when the
holder's file descriptor closes, including when the process crashes or is killed, so a stale lock
never needs clearing by hand. The lock file keeps the holder's PID only to name it in the refusal.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class OutboxBusy(Exception):
    """Another live process holds this outbox; nothing in it was read or changed."""

    def __init__(self, path: Path, holder_pid: int | None) -> None:
        self.path = path
        self.holder_pid = holder_pid
        who_en = f"another process (PID {holder_pid})" if holder_pid else "another process"
        who_ar = f"عملية أخرى (PID {holder_pid})" if holder_pid else "عملية أخرى"
        super().__init__(
            f"صندوق الصادر {path} مستخدم من {who_ar}: شغّل وكيلاً واحداً لكل صندوق صادر، لم يتغير شيء"
            f" / outbox {path} is in use by {who_en}: run one agent per outbox; nothing was changed"
        )


def lock_path(outbox_path: Path) -> Path:
    return outbox_path.with_name(outbox_path.name + ".lock")


class OutboxLock:
    """Held from ``acquire`` until ``release`` or the process's end (closing the descriptor unlocks)."""

    def __init__(self, outbox_path: Path) -> None:
        self.outbox_path = outbox_path
        self.path = lock_path(outbox_path)
        self._fd: int | None = None

    def acquire(self) -> OutboxLock:
        """Take the lock or raise ``OutboxBusy`` at once (never waits: a point must not hang)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise OutboxBusy(self.outbox_path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no PID of a process that no longer holds it
        finally:
            os.close(fd)  # unlocks


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
