"""Command builders and response parsers for the card applet (docs/card-protocol.md).

PURE: bytes in, values out. The card is untrusted input: every parser either
returns a checked value or raises `MalformedResponseError` — never IndexError,
struct.error or a half-filled object — so the agent can refuse a bad card
instead of crashing or, worse, debiting on garbage. A well-formed refusal from
the card (a status word other than 9000) is a `CardRefusedError` naming it.

Errors::

    CardError
    ├── MalformedResponseError   (also a tlv.MalformedDataError)
    └── CardRefusedError         (.status: StatusWord or None, .sw: int)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reader_agent import protocol, tlv
from reader_agent.protocol import BalanceCertificate, CardCertificate, HolderType
from reader_agent.tlv import MalformedDataError

CLA_ISO = 0x00
CLA_PROPRIETARY = 0x80

INS_SELECT = 0xA4
INS_GET_CARD_INFO = 0xCA
INS_INTERNAL_AUTHENTICATE = 0x88
INS_SIGN_TRANSACTION = 0x2A
INS_READ_RECORD = 0xB2
INS_UPDATE_RECORD = 0xDC
INS_INCREASE_SPENT = 0x32

SFI_CARD_CERTIFICATE = 1
SFI_BALANCE = 2
BALANCE_RECORDS = 8
SIGNED_COUNTER_LEN = 4 + protocol.SIGNATURE_LEN


class StatusWord(enum.IntEnum):
    """One status word per outcome; the names are what logs and the agent show."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    COUNTER_EXHAUSTED = 0x6581
    NOT_SELECTED = 0x6985
    CERTIFICATE_NOT_FOR_THIS_CARD = 0x6986
    WRONG_DATA = 0x6A80
    APPLET_NOT_FOUND = 0x6A82
    RECORD_NOT_FOUND = 0x6A83
    OFFLINE_CEILING_EXCEEDED = 0x6A84
    WRONG_P1_P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    INTERNAL_ERROR = 0x6F00


class CardError(Exception):
    """Anything wrong in talking to the card."""


class MalformedResponseError(CardError, MalformedDataError):
    """The card's answer does not follow the protocol (truncated, wrong size, bad TLV...)."""


class CardRefusedError(CardError):
    """The card answered a well-formed status word other than 9000."""

    def __init__(self, sw: int) -> None:
        self.sw = sw
        try:
            self.status: StatusWord | None = StatusWord(sw)
        except ValueError:
            self.status = None
        name = self.status.name.lower() if self.status else "unknown"
        super().__init__(f"card refused: {sw:04X} ({name})")


@dataclass(frozen=True)
class CommandApdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None  # None: no Le; 0: up to 256 bytes

    def to_bytes(self) -> bytes:
        if len(self.data) > 255:
            raise ValueError("short APDUs only: data must be at most 255 bytes")
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le & 0xFF])
        return out


# --- builders ---------------------------------------------------------------


def select_applet(aid: bytes = protocol.AID) -> CommandApdu:
    return CommandApdu(CLA_ISO, INS_SELECT, 0x04, 0x00, aid, 0)


def get_card_info() -> CommandApdu:
    return CommandApdu(CLA_PROPRIETARY, INS_GET_CARD_INFO, 0x00, 0x00, b"", 0)


def internal_authenticate(challenge: bytes) -> CommandApdu:
    if not protocol.CHALLENGE_MIN_LEN <= len(challenge) <= protocol.CHALLENGE_MAX_LEN:
        raise ValueError("challenge must be 8..64 bytes")
    return CommandApdu(CLA_ISO, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00, challenge, 0)


def sign_transaction(digest: bytes) -> CommandApdu:
    if len(digest) != protocol.DIGEST_LEN:
        raise ValueError("digest must be 32 bytes")
    return CommandApdu(CLA_PROPRIETARY, INS_SIGN_TRANSACTION, 0x00, 0x00, digest, 0)


def _record_p2(sfi: int) -> int:
    if not 1 <= sfi <= 30:
        raise ValueError("SFI must be 1..30")
    return (sfi << 3) | 0x04


def read_record(sfi: int, record: int) -> CommandApdu:
    return CommandApdu(CLA_ISO, INS_READ_RECORD, record, _record_p2(sfi), b"", 0)


def update_record(sfi: int, record: int, data: bytes) -> CommandApdu:
    return CommandApdu(CLA_ISO, INS_UPDATE_RECORD, record, _record_p2(sfi), data, None)


def increase_spent(record: int, quantity: int) -> CommandApdu:
    if not 0 < quantity <= protocol.COUNTER_MAX:
        raise ValueError("quantity must be 1..2^32-1")
    return CommandApdu(CLA_PROPRIETARY, INS_INCREASE_SPENT, record, 0x00, quantity.to_bytes(4, "big"), 0)


# --- parsers ----------------------------------------------------------------


@dataclass(frozen=True)
class CardInfo:
    serial: str
    holder_type: HolderType
    version: int
    counter: int
    public_key: bytes


@dataclass(frozen=True)
class SignedCounter:
    """The card's answer to INTERNAL AUTHENTICATE and SIGN TRANSACTION."""

    counter: int
    signature: bytes


@dataclass(frozen=True)
class BalanceRecord:
    certificate: bytes  # the signed blob as the backend wrote it
    decoded: BalanceCertificate  # NOT yet verified: call protocol.verify_balance_certificate
    spent_qty: int


def split_response(raw: bytes) -> tuple[bytes, int]:
    if len(raw) < 2:
        raise MalformedResponseError(f"response of {len(raw)} bytes has no status word")
    return bytes(raw[:-2]), (raw[-2] << 8) | raw[-1]


def expect_ok(raw: bytes) -> bytes:
    """The data of a 9000 answer; otherwise CardRefusedError (or Malformed if no SW)."""
    data, sw = split_response(raw)
    if sw != StatusWord.OK:
        if data:
            raise MalformedResponseError(f"refusal {sw:04X} carries {len(data)} data bytes")
        raise CardRefusedError(sw)
    return data


def _malformed(exc: MalformedDataError) -> MalformedResponseError:
    return MalformedResponseError(str(exc))


def parse_card_info(data: bytes) -> CardInfo:
    try:
        fields = tlv.as_dict(
            data,
            required=(
                protocol.TAG_SERIAL,
                protocol.TAG_HOLDER_TYPE,
                protocol.TAG_VERSION,
                protocol.TAG_COUNTER,
                protocol.TAG_PUBLIC_KEY,
            ),
        )
        public_key = fields[protocol.TAG_PUBLIC_KEY]
        protocol.load_public_key(public_key)
        return CardInfo(
            serial=tlv.text(fields[protocol.TAG_SERIAL], "serial", max_len=protocol.SERIAL_MAX_LEN),
            holder_type=HolderType.from_code(tlv.uint(fields[protocol.TAG_HOLDER_TYPE], 1, "holder type")),
            version=tlv.uint(fields[protocol.TAG_VERSION], 1, "version"),
            counter=tlv.uint(fields[protocol.TAG_COUNTER], 4, "counter"),
            public_key=public_key,
        )
    except MalformedDataError as exc:
        raise _malformed(exc) from exc


def parse_signed_counter(data: bytes) -> SignedCounter:
    if len(data) != SIGNED_COUNTER_LEN:
        raise MalformedResponseError(f"signed counter must be {SIGNED_COUNTER_LEN} bytes, got {len(data)}")
    return SignedCounter(counter=int.from_bytes(data[:4], "big"), signature=bytes(data[4:]))


def parse_card_certificate_record(data: bytes) -> CardCertificate:
    try:
        return protocol.decode_card_certificate(data)
    except MalformedDataError as exc:
        raise _malformed(exc) from exc


def parse_balance_record(data: bytes) -> BalanceRecord:
    """A balance record is the certificate TLV followed by the card's spent TLV."""
    try:
        items = tlv.parse(data)
        if len(items) != 2 or items[0][0] != protocol.TAG_BALANCE_CERT or items[1][0] != protocol.TAG_SPENT:
            raise MalformedDataError("balance record must be a certificate then a spent quantity")
        certificate = tlv.encode(protocol.TAG_BALANCE_CERT, items[0][1])
        return BalanceRecord(
            certificate=certificate,
            decoded=protocol.decode_balance_certificate(certificate),
            spent_qty=tlv.uint(items[1][1], 4, "spent quantity"),
        )
    except MalformedDataError as exc:
        raise _malformed(exc) from exc


def parse_quantity(data: bytes) -> int:
    if len(data) != 4:
        raise MalformedResponseError(f"quantity must be 4 bytes, got {len(data)}")
    return int.from_bytes(data, "big")


# --- card side --------------------------------------------------------------


def parse_command(raw: bytes) -> CommandApdu:
    """Split a short command APDU (ISO 7816-3 cases 1-4); the card answers 6700 on error."""
    if len(raw) < 4:
        raise MalformedDataError("command shorter than its header")
    cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
    body = raw[4:]
    if not body:
        return CommandApdu(cla, ins, p1, p2)
    if len(body) == 1:
        return CommandApdu(cla, ins, p1, p2, b"", body[0])
    lc = body[0]
    if lc == 0:
        raise MalformedDataError("extended length APDUs are not supported")
    if len(body) == 1 + lc:
        return CommandApdu(cla, ins, p1, p2, bytes(body[1:]))
    if len(body) == 2 + lc:
        return CommandApdu(cla, ins, p1, p2, bytes(body[1:-1]), body[-1])
    raise MalformedDataError(f"Lc {lc} does not match {len(body) - 1} body bytes")
