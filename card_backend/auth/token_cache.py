"""A small, bounded, time-limited cache of device principals keyed by the token's SHA-256.

A revoked device is refused at the latest ``ttl_s`` seconds after revocation; the cache holds at most
``max_entries`` devices (a point has a handful; a national deployment some tens of thousands).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from card_backend.auth.principal import Principal
from card_backend.auth.security import token_sha256


class DeviceTokenCache:
    def __init__(self, ttl_s: float = 30.0, max_entries: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> Principal | None:
        key = token_sha256(token)
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            return item[1]

    def put(self, token: str, principal: Principal) -> None:
        key = token_sha256(token)
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl_s, principal)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
