"""Device revocations reach every API process at once (PostgreSQL ``LISTEN``/``NOTIFY``).

Each process caches device principals for up to 30 s (``auth.token_cache``) so a tap does not cost a
database lookup. A revocation commits ``revoked_at`` and, in the same transaction, notifies
``device_revoked`` (``PointRepository.announce_revocation``); PostgreSQL delivers the notification at
commit, and every process's listener thread drops its cached device principals. A revoked (stolen,
or dishonest station's) device is refused by all workers within the notification's delivery, not
after the cache's TTL.

The listener cannot miss a revocation silently: whenever its connection fails it clears the cache
before and after reconnecting (a notification sent while it was away is then covered), then listens
again. SQLite deployments run one process; the revoking request clears its cache after commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)
CHANNEL = "device_revoked"


class RevocationListener:
    """A daemon thread calling ``on_revoked`` for every ``device_revoked`` notification."""

    def __init__(self, dsn: str, on_revoked: Callable[[], None], *, retry_s: float = 1.0) -> None:
        self.dsn = dsn
        self.on_revoked = on_revoked
        self.retry_s = retry_s
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-revocations", daemon=True)

    def start(self) -> RevocationListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.on_revoked()  # whatever was revoked while this connection was not listening
                    self.listening.set()
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self.on_revoked()
            except psycopg.Error as exc:
                self.listening.clear()
                self.on_revoked()
                log.warning("device revocation listener lost its connection: %s", exc)
                self._stop.wait(self.retry_s)
