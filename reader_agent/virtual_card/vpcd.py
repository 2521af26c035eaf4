"""Connect an applet to pcscd's vpcd driver, as a card in a virtual reader.

vpcd listens on 127.0.0.1:35963 (one port per virtual reader); the card is the
TCP client. Every message either way is a 2-byte big-endian length and a
payload. A 1-byte payload from vpcd is a control (0 power off, 1 power on,
2 reset, 4 get ATR — only the last one is answered, with the ATR); anything
longer is a command APDU, answered with data + SW1 SW2. Inserting the card is
connecting, removing it is closing the socket; if vpcd goes away (pcscd
restarted) the card reconnects until it is removed.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading

from reader_agent.virtual_card.applet import Applet

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
RECONNECT_DELAY_S = 0.2

CTRL_OFF = 0
CTRL_ON = 1
CTRL_RESET = 2
CTRL_ATR = 4

HISTORICAL_BYTES = b"SCLEDGER"


def build_atr(historical: bytes = HISTORICAL_BYTES) -> bytes:
    """3B, T0 announcing TD1 and the historical bytes, T=0 then T=1 offered, TCK."""
    if len(historical) > 15:
        raise ValueError("at most 15 historical bytes")
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for byte in body:
        tck ^= byte
    return b"\x3b" + body + bytes([tck])


ATR = build_atr()


class VpcdCard:
    """One virtual card in one vpcd reader; `insert()` starts it, `remove()` pulls it out."""

    def __init__(
        self, applet: Applet, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, atr: bytes = ATR
    ) -> None:
        self.applet = applet
        self.host = host
        self.port = port
        self.atr = atr
        self._removed = threading.Event()
        self._connected = threading.Event()
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------

    def insert(self) -> VpcdCard:
        self._removed.clear()
        self._thread = threading.Thread(target=self.run, name=f"vpcd-card-{self.port}", daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def remove(self) -> None:
        """Pull the card out: close the socket so vpcd reports the card absent."""
        self._removed.set()
        self._close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def run(self) -> None:
        """Serve vpcd until removed, reconnecting whenever the connection drops."""
        while not self._removed.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2)
            except OSError:
                self._removed.wait(RECONNECT_DELAY_S)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sock = sock
            if self._removed.is_set():
                self._close()
                break
            self._connected.set()
            log.info("virtual card %s in vpcd port %d", self.applet.state.serial, self.port)
            try:
                self._serve(sock)
            except OSError as exc:
                log.info("vpcd connection lost: %s", exc)
            finally:
                self._connected.clear()
                self._close()
                self.applet.reset()
            self._removed.wait(RECONNECT_DELAY_S)

    # -- wire -------------------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        while not self._removed.is_set():
            header = _recv_exact(sock, 2)
            if header is None:
                return
            (size,) = struct.unpack("!H", header)
            payload = _recv_exact(sock, size)
            if payload is None:
                return
            answer = self.handle(payload)
            if answer is not None:
                sock.sendall(struct.pack("!H", len(answer)) + answer)

    def handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            control = payload[0]
            if control == CTRL_ATR:
                return self.atr
            if control in (CTRL_OFF, CTRL_ON, CTRL_RESET):
                self.applet.reset()
            return None
        return self.applet.process(payload)

    def _close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        _quick_ack(sock)
        chunks += chunk
    return bytes(chunks)


def _quick_ack(sock: socket.socket) -> None:
    """ACK at once. vpcd writes the length and the APDU separately with Nagle on, so a delayed ACK
    here (Linux: 40 ms) would hold every APDU back; TCP_QUICKACK is not sticky, hence per read."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
