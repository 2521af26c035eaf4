"""The card applet as a pure state machine: command APDU bytes in, response bytes out.

It behaves as the protocol page says a real card must: nothing but SELECT works
until the applet is selected; the counter is stepped and saved BEFORE a
signature leaves the card, so no two answers ever carry the same counter; the
offline spent quantity can only grow, and never past the ceiling of the
balance certificate written on the card. Saving is injected (`persist`) so the
applet stays free of files and sockets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from reader_agent import apdu, protocol, tlv
from reader_agent.apdu import CommandApdu, StatusWord
from reader_agent.tlv import MalformedDataError
from reader_agent.virtual_card.state import BalanceSlot, CardState

log = logging.getLogger(__name__)

ISO_INS = {apdu.INS_SELECT, apdu.INS_INTERNAL_AUTHENTICATE, apdu.INS_READ_RECORD, apdu.INS_UPDATE_RECORD}
PROPRIETARY_INS = {apdu.INS_GET_CARD_INFO, apdu.INS_SIGN_TRANSACTION, apdu.INS_INCREASE_SPENT}


class _Refusal(Exception):
    def __init__(self, status: StatusWord) -> None:
        self.status = status


def _sw(status: StatusWord) -> bytes:
    return int(status).to_bytes(2, "big")


class Applet:
    def __init__(self, state: CardState, persist: Callable[[CardState], None]) -> None:
        self.state = state
        self._persist = persist
        self.selected = False

    def reset(self) -> None:
        """Power cycle or reset: the applet must be selected again."""
        self.selected = False

    def process(self, raw: bytes) -> bytes:
        try:
            command = apdu.parse_command(raw)
        except MalformedDataError:
            return _sw(StatusWord.WRONG_LENGTH)
        try:
            return self._dispatch(command) + _sw(StatusWord.OK)
        except _Refusal as refusal:
            return _sw(refusal.status)
        except Exception:  # a real card answers 6F00 rather than going mute
            log.exception("applet failed on INS %02X", command.ins)
            return _sw(StatusWord.INTERNAL_ERROR)

    def _dispatch(self, cmd: CommandApdu) -> bytes:
        if cmd.ins in ISO_INS:
            expected_cla = apdu.CLA_ISO
        elif cmd.ins in PROPRIETARY_INS:
            expected_cla = apdu.CLA_PROPRIETARY
        else:
            raise _Refusal(StatusWord.INS_NOT_SUPPORTED)
        if cmd.cla != expected_cla:
            raise _Refusal(StatusWord.CLA_NOT_SUPPORTED)
        if cmd.ins == apdu.INS_SELECT:
            return self._select(cmd)
        if not self.selected:
            raise _Refusal(StatusWord.NOT_SELECTED)
        handler = {
            apdu.INS_GET_CARD_INFO: self._card_info,
            apdu.INS_INTERNAL_AUTHENTICATE: self._internal_authenticate,
            apdu.INS_SIGN_TRANSACTION: self._sign_transaction,
            apdu.INS_READ_RECORD: self._read_record,
            apdu.INS_UPDATE_RECORD: self._update_record,
            apdu.INS_INCREASE_SPENT: self._increase_spent,
        }[cmd.ins]
        return handler(cmd)

    def _select(self, cmd: CommandApdu) -> bytes:
        if cmd.p1 != 0x04 or cmd.p2 not in (0x00, 0x0C) or cmd.data != protocol.AID:
            self.selected = False
            raise _Refusal(StatusWord.APPLET_NOT_FOUND)
        self.selected = True
        if cmd.p2 == 0x0C:
            return b""
        return tlv.encode(0x6F, tlv.encode(0x84, protocol.AID))

    def _card_info(self, cmd: CommandApdu) -> bytes:
        _require_p1p2(cmd, 0, 0)
        state = self.state
        return tlv.encode_all(
            [
                (protocol.TAG_SERIAL, state.serial.encode("ascii")),
                (protocol.TAG_HOLDER_TYPE, bytes([state.holder_type.code])),
                (protocol.TAG_VERSION, bytes([protocol.PROTOCOL_VERSION])),
                (protocol.TAG_COUNTER, state.counter.to_bytes(4, "big")),
                (protocol.TAG_PUBLIC_KEY, state.public_key),
            ]
        )

    def _next_counter(self) -> int:
        if self.state.counter >= protocol.COUNTER_MAX:
            raise _Refusal(StatusWord.COUNTER_EXHAUSTED)
        self.state.counter += 1
        self._persist(self.state)
        return self.state.counter

    def _internal_authenticate(self, cmd: CommandApdu) -> bytes:
        _require_p1p2(cmd, 0, 0)
        if not protocol.CHALLENGE_MIN_LEN <= len(cmd.data) <= protocol.CHALLENGE_MAX_LEN:
            raise _Refusal(StatusWord.WRONG_LENGTH)
        counter = self._next_counter()
        message = protocol.auth_message(cmd.data, self.state.serial, counter)
        return counter.to_bytes(4, "big") + protocol.sign(self.state.private_key, message)

    def _sign_transaction(self, cmd: CommandApdu) -> bytes:
        _require_p1p2(cmd, 0, 0)
        if len(cmd.data) != protocol.DIGEST_LEN:
            raise _Refusal(StatusWord.WRONG_LENGTH)
        counter = self._next_counter()
        message = protocol.transaction_message(cmd.data, self.state.serial, counter)
        return counter.to_bytes(4, "big") + protocol.sign(self.state.private_key, message)

    def _record_address(self, cmd: CommandApdu) -> tuple[int, int]:
        if cmd.p2 & 0x07 != 0x04:
            raise _Refusal(StatusWord.WRONG_P1_P2)
        sfi, record = cmd.p2 >> 3, cmd.p1
        if (sfi == apdu.SFI_CARD_CERTIFICATE and record == 1) or (
            sfi == apdu.SFI_BALANCE and 1 <= record <= apdu.BALANCE_RECORDS
        ):
            return sfi, record
        raise _Refusal(StatusWord.WRONG_P1_P2)

    def _read_record(self, cmd: CommandApdu) -> bytes:
        sfi, record = self._record_address(cmd)
        if sfi == apdu.SFI_CARD_CERTIFICATE:
            if self.state.card_certificate is None:
                raise _Refusal(StatusWord.RECORD_NOT_FOUND)
            return self.state.card_certificate
        slot = self.state.balances.get(record)
        if slot is None:
            raise _Refusal(StatusWord.RECORD_NOT_FOUND)
        return slot.certificate + tlv.encode(protocol.TAG_SPENT, slot.spent_qty.to_bytes(4, "big"))

    def _update_record(self, cmd: CommandApdu) -> bytes:
        sfi, record = self._record_address(cmd)
        try:
            if sfi == apdu.SFI_CARD_CERTIFICATE:
                card_cert = protocol.decode_card_certificate(cmd.data)
                mine = card_cert.serial == self.state.serial and card_cert.public_key == self.state.public_key
            else:
                balance = protocol.decode_balance_certificate(cmd.data)
                mine = balance.serial == self.state.serial
        except MalformedDataError as exc:
            raise _Refusal(StatusWord.WRONG_DATA) from exc
        if not mine:
            raise _Refusal(StatusWord.CERTIFICATE_NOT_FOR_THIS_CARD)
        if sfi == apdu.SFI_CARD_CERTIFICATE:
            self.state.card_certificate = cmd.data
        else:
            # A new certificate starts a new offline allowance: spent goes back to 0.
            self.state.balances[record] = BalanceSlot(certificate=cmd.data)
        self._persist(self.state)
        return b""

    def _increase_spent(self, cmd: CommandApdu) -> bytes:
        if cmd.p2 != 0 or not 1 <= cmd.p1 <= apdu.BALANCE_RECORDS:
            raise _Refusal(StatusWord.WRONG_P1_P2)
        if len(cmd.data) != 4:
            raise _Refusal(StatusWord.WRONG_LENGTH)
        slot = self.state.balances.get(cmd.p1)
        if slot is None:
            raise _Refusal(StatusWord.RECORD_NOT_FOUND)
        quantity = int.from_bytes(cmd.data, "big")
        ceiling = protocol.decode_balance_certificate(slot.certificate).ceiling_qty
        if quantity == 0 or slot.spent_qty + quantity > ceiling:
            raise _Refusal(StatusWord.OFFLINE_CEILING_EXCEEDED)
        slot.spent_qty += quantity
        self._persist(self.state)
        return slot.spent_qty.to_bytes(4, "big")


def _require_p1p2(cmd: CommandApdu, p1: int, p2: int) -> None:
    if (cmd.p1, cmd.p2) != (p1, p2):
        raise _Refusal(StatusWord.WRONG_P1_P2)
