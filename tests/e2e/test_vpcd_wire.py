"""The virtual card's vpcd wire protocol against a stand-in vpcd socket: framing, controls, reconnect."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from reader_agent import apdu
from reader_agent.protocol import HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStore
from reader_agent.virtual_card.vpcd import ATR, CTRL_ATR, CTRL_ON, VpcdCard


def _send(conn: socket.socket, payload: bytes) -> None:
    conn.sendall(struct.pack("!H", len(payload)) + payload)


def _recv(conn: socket.socket) -> bytes:
    size = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
    return conn.recv(size, socket.MSG_WAITALL)


def test_card_answers_vpcd_and_comes_back_after_vpcd_restarts(tmp_path: Path) -> None:
    store = CardStore(tmp_path)
    card = VpcdCard(Applet(store.personalise("WIRE-1", HolderType.FAMILY), store.save))
    with socket.create_server(("127.0.0.1", 0)) as vpcd:
        vpcd.settimeout(10)
        card.port = vpcd.getsockname()[1]
        card.insert()
        try:
            for _ in range(2):  # the second round is vpcd after a restart
                conn, _ = vpcd.accept()
                with conn:
                    conn.settimeout(10)
                    _send(conn, bytes([CTRL_ON]))
                    _send(conn, bytes([CTRL_ATR]))
                    assert _recv(conn) == ATR
                    _send(conn, apdu.select_applet().to_bytes())
                    assert _recv(conn)[-2:] == b"\x90\x00"
                    _send(conn, apdu.get_card_info().to_bytes())
                    assert apdu.parse_card_info(apdu.expect_ok(_recv(conn))).serial == "WIRE-1"
            conn, _ = vpcd.accept()
            with conn:
                conn.settimeout(10)
                card.remove()  # pulling the card out closes the socket
                assert conn.recv(2) == b""
        finally:
            card.remove()
