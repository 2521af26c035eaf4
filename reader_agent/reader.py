"""PC/SC access through pyscard — the ONLY module that imports `smartcard`.

Keeping pyscard behind this door means the rest of the agent (and every unit
test) runs without pcscd, and pyscard's many exception types become three of
ours: no such reader, no card, card gone mid-exchange.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smartcard.CardMonitoring import CardMonitor, CardObserver
from smartcard.Exceptions import CardConnectionException, NoCardException, SmartcardException
from smartcard.pcsc.PCSCExceptions import BaseSCardException
from smartcard.ReaderMonitoring import ReaderMonitor, ReaderObserver
from smartcard.System import readers as _pcsc_readers

from reader_agent.apdu import CardError
from reader_agent.card import CardApplication

#: Everything pyscard raises: its own tree and the raw PC/SC one (e.g. no pcscd running).
PYSCARD_ERRORS = (SmartcardException, BaseSCardException)

CardChange = Callable[[list[tuple[str, bytes]], list[tuple[str, bytes]]], None]
ReaderChange = Callable[[list[str], list[str]], None]


class ReaderError(CardError):
    """PC/SC could not be used: no pcscd, unknown reader."""


class CardAbsentError(ReaderError):
    """There is no card in the reader."""


class CardRemovedError(ReaderError):
    """The card went away (or the reader did) in the middle of an exchange."""


def list_readers() -> list[str]:
    try:
        return [str(reader) for reader in _pcsc_readers()]
    except PYSCARD_ERRORS as exc:
        raise ReaderError(f"cannot list readers: {exc}") from exc


class PcscTransport:
    """A connection to the card in one named reader."""

    def __init__(self, reader_name: str) -> None:
        try:
            matches = [reader for reader in _pcsc_readers() if str(reader) == reader_name]
        except PYSCARD_ERRORS as exc:
            raise ReaderError(f"cannot list readers: {exc}") from exc
        if not matches:
            raise ReaderError(f"no reader named {reader_name!r}")
        self.reader_name = reader_name
        self._connection: Any = matches[0].createConnection()
        try:
            self._connection.connect()
        except NoCardException as exc:
            raise CardAbsentError(f"no card in {reader_name}") from exc
        except PYSCARD_ERRORS as exc:
            # Unpowered, just removed, mute: for whoever taps, there is no usable card in the reader.
            raise CardAbsentError(f"cannot connect to the card in {reader_name}: {exc}") from exc

    @property
    def atr(self) -> bytes:
        return bytes(self._connection.getATR())

    def transmit(self, command: bytes) -> bytes:
        try:
            data, sw1, sw2 = self._connection.transmit(list(command))
        except (CardConnectionException, *PYSCARD_ERRORS) as exc:
            raise CardRemovedError(f"card in {self.reader_name} went away: {exc}") from exc
        return bytes(data) + bytes([sw1, sw2])

    def close(self) -> None:
        try:
            self._connection.disconnect()
        except PYSCARD_ERRORS:
            pass  # the card is already gone; nothing left to release
        finally:
            self._connection.release()

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_card(reader_name: str) -> tuple[PcscTransport, CardApplication]:
    """Connect and SELECT the ledger applet; the caller closes the transport."""
    transport = PcscTransport(reader_name)
    application = CardApplication(transport)
    try:
        application.select()
    except BaseException:
        transport.close()
        raise
    return transport, application


class _CardObserver(CardObserver):  # type: ignore[misc]
    def __init__(self, callback: CardChange) -> None:
        self.callback = callback

    def update(self, observable: object, handlers: tuple[list[Any], list[Any]]) -> None:
        added, removed = handlers
        self.callback(
            [(str(card.reader), bytes(card.atr)) for card in added],
            [(str(card.reader), bytes(card.atr)) for card in removed],
        )


class _ReaderObserver(ReaderObserver):  # type: ignore[misc]
    def __init__(self, callback: ReaderChange) -> None:
        self.callback = callback

    def update(self, observable: object, handlers: tuple[list[Any], list[Any]]) -> None:
        added, removed = handlers
        self.callback([str(reader) for reader in added], [str(reader) for reader in removed])


def watch_cards(callback: CardChange) -> Callable[[], None]:
    """Call back on every card insertion/removal in any reader; returns the unsubscribe function."""
    observer = _CardObserver(callback)
    monitor = CardMonitor()
    monitor.addObserver(observer)
    return lambda: monitor.deleteObserver(observer)


def watch_readers(callback: ReaderChange) -> Callable[[], None]:
    """Call back when readers appear or disappear (hot-plug); returns the unsubscribe function."""
    observer = _ReaderObserver(callback)
    monitor = ReaderMonitor()
    monitor.addObserver(observer)
    return lambda: monitor.deleteObserver(observer)
