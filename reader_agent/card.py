"""What the agent asks of a card, over any transport that moves APDU bytes.

The transport is a port: `reader.PcscTransport` in production and e2e tests,
the applet itself in unit tests. Everything here is protocol logic — the order
of commands and turning answers into values — and raises only `apdu.CardError`
subclasses (transports map their own failures into them too).
"""

from __future__ import annotations

from typing import Protocol

from reader_agent import apdu
from reader_agent.apdu import BalanceRecord, CardInfo, CardRefusedError, SignedCounter, StatusWord
from reader_agent.protocol import CardCertificate


class Transport(Protocol):
    def transmit(self, command: bytes) -> bytes:
        """Send one command APDU, return the response data + SW1 SW2."""
        ...


class CardApplication:
    """The ledger applet on one inserted card; `select()` first."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _send(self, command: apdu.CommandApdu) -> bytes:
        return apdu.expect_ok(self.transport.transmit(command.to_bytes()))

    def select(self) -> None:
        self._send(apdu.select_applet())

    def info(self) -> CardInfo:
        return apdu.parse_card_info(self._send(apdu.get_card_info()))

    def authenticate(self, challenge: bytes) -> SignedCounter:
        return apdu.parse_signed_counter(self._send(apdu.internal_authenticate(challenge)))

    def sign_transaction(self, digest: bytes) -> SignedCounter:
        return apdu.parse_signed_counter(self._send(apdu.sign_transaction(digest)))

    def read_card_certificate(self) -> tuple[bytes, CardCertificate] | None:
        """The issuer's certificate as written at personalisation, or None if there is none."""
        data = self._optional(apdu.read_record(apdu.SFI_CARD_CERTIFICATE, 1))
        return None if data is None else (data, apdu.parse_card_certificate_record(data))

    def write_card_certificate(self, certificate: bytes) -> None:
        self._send(apdu.update_record(apdu.SFI_CARD_CERTIFICATE, 1, certificate))

    def read_balance(self, record: int) -> BalanceRecord | None:
        data = self._optional(apdu.read_record(apdu.SFI_BALANCE, record))
        return None if data is None else apdu.parse_balance_record(data)

    def read_balances(self) -> dict[int, BalanceRecord]:
        found: dict[int, BalanceRecord] = {}
        for record in range(1, apdu.BALANCE_RECORDS + 1):
            balance = self.read_balance(record)
            if balance is not None:
                found[record] = balance
        return found

    def write_balance(self, record: int, certificate: bytes) -> None:
        self._send(apdu.update_record(apdu.SFI_BALANCE, record, certificate))

    def increase_spent(self, record: int, quantity: int) -> int:
        """Count an offline debit on the card itself; refused past the certificate's ceiling."""
        return apdu.parse_quantity(self._send(apdu.increase_spent(record, quantity)))

    def _optional(self, command: apdu.CommandApdu) -> bytes | None:
        try:
            return self._send(command)
        except CardRefusedError as exc:
            if exc.status is StatusWord.RECORD_NOT_FOUND:
                return None
            raise
