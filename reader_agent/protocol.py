"""Message formats and crypto shared by the card, the reader agent and the backend.

PURE: no pyscard, no files, no sockets. The backend imports this module to check
what a card signed, so the byte layouts here are the contract written down in
docs/card-protocol.md; change one only together with that page and the protocol
version.

Every signed message starts with its own domain string, so a signature made for
one purpose (a tap) can never be replayed as another (a debit or a certificate).
Signatures travel as raw r‖s (64 bytes) so the card's answers have a fixed size.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from reader_agent import tlv
from reader_agent.tlv import MalformedDataError

PROTOCOL_VERSION = 1
#: Proprietary AID: F0 (unregistered) + ASCII "SCLEDGER".
AID = bytes.fromhex("F0") + b"SCLEDGER"

AUTH_DOMAIN = b"SCL-AUTH-v1\x00"
TX_DOMAIN = b"SCL-TX-v1\x00"
TX_DIGEST_DOMAIN = b"SCL-TXD-v1\x00"
CARD_CERT_DOMAIN = b"SCL-CARDCERT-v1\x00"
BALANCE_CERT_DOMAIN = b"SCL-BALCERT-v1\x00"

SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 65
DIGEST_LEN = 32
COUNTER_MAX = 0xFFFFFFFF
CHALLENGE_MIN_LEN = 8
CHALLENGE_MAX_LEN = 64
SERIAL_MAX_LEN = 16

# TLV tags (docs/card-protocol.md, "TLV tags").
TAG_SERIAL = 0xC1
TAG_HOLDER_TYPE = 0xC2
TAG_VERSION = 0xC3
TAG_COUNTER = 0xC4
TAG_PUBLIC_KEY = 0xC5
TAG_ISSUED_DATE = 0xC6
TAG_PRODUCT = 0xC7
TAG_CEILING = 0xC8
TAG_VALID_UNTIL = 0xC9
TAG_ISSUED_COUNTER = 0xCA
TAG_SPENT = 0xCB
TAG_SIGNATURE = 0x9E
TAG_CARD_CERT_BODY = 0xA1
TAG_BALANCE_CERT_BODY = 0xA2
TAG_CARD_CERT = 0xE1
TAG_BALANCE_CERT = 0xE2


class CertificateError(Exception):
    """A certificate is well formed but its signature or its subject does not check out."""


class HolderType(enum.Enum):
    """Whose quota the card carries; the byte is what the card stores."""

    FAMILY = "family"
    PERSON = "person"
    VEHICLE = "vehicle"

    @property
    def code(self) -> int:
        return _HOLDER_CODES[self]

    @classmethod
    def from_code(cls, code: int) -> HolderType:
        for holder, value in _HOLDER_CODES.items():
            if value == code:
                return holder
        raise MalformedDataError(f"unknown holder type code {code}")


_HOLDER_CODES = {HolderType.FAMILY: 1, HolderType.PERSON: 2, HolderType.VEHICLE: 3}


# --- keys and raw signatures -------------------------------------------------


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key_bytes(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> bytes:
    """The 65-byte uncompressed point the card reports and certificates carry."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def public_key_der(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey | bytes) -> bytes:
    """SubjectPublicKeyInfo DER, the form the backend stores for a card."""
    public = load_public_key(key) if isinstance(key, bytes) else key
    if isinstance(public, ec.EllipticCurvePrivateKey):
        public = public.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """Accept a 65-byte uncompressed P-256 point or SubjectPublicKeyInfo DER."""
    try:
        if len(data) == PUBLIC_KEY_LEN and data[0] == 0x04:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
        key = serialization.load_der_public_key(data)
    except ValueError as exc:
        raise MalformedDataError("not a P-256 public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise MalformedDataError("not a P-256 public key")
    return key


def sign(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """ECDSA P-256 / SHA-256, returned as raw r‖s (64 bytes)."""
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(public_key: ec.EllipticCurvePublicKey, message: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_LEN:
        return False
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_card_signature(card_public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only if `signature` is the card's over `message`; a bad key is simply False."""
    try:
        key = load_public_key(card_public_key)
    except MalformedDataError:
        return False
    return verify(key, message, signature)


# --- signed messages ---------------------------------------------------------


def _lv(value: bytes) -> bytes:
    if len(value) > 0xFF:
        raise ValueError("field longer than 255 bytes")
    return bytes([len(value)]) + value


def _serial_bytes(serial: str) -> bytes:
    raw = serial.encode("ascii")
    if not 0 < len(raw) <= SERIAL_MAX_LEN:
        raise ValueError(f"serial must be 1..{SERIAL_MAX_LEN} ASCII characters")
    return raw


def auth_message(challenge: bytes, serial: str, counter: int) -> bytes:
    """What the card signs at a tap (INTERNAL AUTHENTICATE)."""
    return AUTH_DOMAIN + _lv(challenge) + _lv(_serial_bytes(serial)) + counter.to_bytes(4, "big")


def transaction_digest(
    redemption_id: uuid.UUID | str, product_code: str, quantity: int, point_code: str
) -> bytes:
    """SHA-256 naming exactly one debit: which redemption, what, how much, where."""
    rid = redemption_id if isinstance(redemption_id, uuid.UUID) else uuid.UUID(redemption_id)
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    body = (
        TX_DIGEST_DOMAIN
        + rid.bytes
        + _lv(product_code.encode("utf-8"))
        + quantity.to_bytes(8, "big")
        + _lv(point_code.encode("utf-8"))
    )
    return hashlib.sha256(body).digest()


def transaction_message(digest: bytes, serial: str, counter: int) -> bytes:
    """What the card signs at confirmation (SIGN TRANSACTION)."""
    if len(digest) != DIGEST_LEN:
        raise ValueError("transaction digest must be 32 bytes")
    return TX_DOMAIN + digest + _lv(_serial_bytes(serial)) + counter.to_bytes(4, "big")


# --- certificates --------------------------------------------------------------


@dataclass(frozen=True)
class CardCertificate:
    """The issuer's statement "this public key belongs to card `serial`"."""

    serial: str
    holder_type: HolderType
    public_key: bytes  # 65-byte uncompressed point
    issued: dt.date

    def body(self) -> bytes:
        return tlv.encode(
            TAG_CARD_CERT_BODY,
            tlv.encode_all(
                [
                    (TAG_SERIAL, _serial_bytes(self.serial)),
                    (TAG_HOLDER_TYPE, bytes([self.holder_type.code])),
                    (TAG_PUBLIC_KEY, self.public_key),
                    (TAG_ISSUED_DATE, self.issued.strftime("%Y%m%d").encode("ascii")),
                ]
            ),
        )


@dataclass(frozen=True)
class BalanceCertificate:
    """The backend's statement "card `serial` may spend up to `ceiling_qty` offline until ..."."""

    serial: str
    product_code: str
    ceiling_qty: int
    valid_until: dt.datetime  # timezone-aware
    issued_counter: int

    def body(self) -> bytes:
        return tlv.encode(
            TAG_BALANCE_CERT_BODY,
            tlv.encode_all(
                [
                    (TAG_SERIAL, _serial_bytes(self.serial)),
                    (TAG_PRODUCT, self.product_code.encode("ascii")),
                    (TAG_CEILING, self.ceiling_qty.to_bytes(4, "big")),
                    (TAG_VALID_UNTIL, int(self.valid_until.timestamp()).to_bytes(8, "big")),
                    (TAG_ISSUED_COUNTER, self.issued_counter.to_bytes(4, "big")),
                ]
            ),
        )


def _signed(outer_tag: int, domain: bytes, body: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    return tlv.encode(outer_tag, body + tlv.encode(TAG_SIGNATURE, sign(key, domain + body)))


def _split_signed(blob: bytes, outer_tag: int, body_tag: int) -> tuple[bytes, bytes, bytes]:
    """Return (body TLV bytes, body value, signature) of a signed certificate."""
    outer = tlv.parse(blob)
    if len(outer) != 1 or outer[0][0] != outer_tag:
        raise MalformedDataError(f"expected one {outer_tag:#04x} certificate")
    inner = tlv.parse(outer[0][1])
    if len(inner) != 2 or inner[0][0] != body_tag or inner[1][0] != TAG_SIGNATURE:
        raise MalformedDataError("certificate must hold a body then a signature")
    body = tlv.encode(body_tag, inner[0][1])
    if len(inner[1][1]) != SIGNATURE_LEN:
        raise MalformedDataError("certificate signature must be 64 bytes")
    return body, inner[0][1], inner[1][1]


def issue_card_certificate(issuer_key: ec.EllipticCurvePrivateKey, cert: CardCertificate) -> bytes:
    load_public_key(cert.public_key)
    return _signed(TAG_CARD_CERT, CARD_CERT_DOMAIN, cert.body(), issuer_key)


def decode_card_certificate(blob: bytes) -> CardCertificate:
    """Parse without checking the signature (the card uses this on UPDATE RECORD)."""
    _, value, _ = _split_signed(blob, TAG_CARD_CERT, TAG_CARD_CERT_BODY)
    fields = tlv.as_dict(value, required=(TAG_SERIAL, TAG_HOLDER_TYPE, TAG_PUBLIC_KEY, TAG_ISSUED_DATE))
    try:
        issued = dt.datetime.strptime(tlv.text(fields[TAG_ISSUED_DATE], "issued date"), "%Y%m%d").date()
    except ValueError as exc:
        raise MalformedDataError("issued date is not YYYYMMDD") from exc
    public_key = fields[TAG_PUBLIC_KEY]
    load_public_key(public_key)
    return CardCertificate(
        serial=tlv.text(fields[TAG_SERIAL], "serial", max_len=SERIAL_MAX_LEN),
        holder_type=HolderType.from_code(tlv.uint(fields[TAG_HOLDER_TYPE], 1, "holder type")),
        public_key=public_key,
        issued=issued,
    )


def verify_card_certificate(issuer_public_key: ec.EllipticCurvePublicKey, blob: bytes) -> CardCertificate:
    """Decode and check the issuer's signature; raises CertificateError if it is not the issuer's."""
    body, _, signature = _split_signed(blob, TAG_CARD_CERT, TAG_CARD_CERT_BODY)
    cert = decode_card_certificate(blob)
    if not verify(issuer_public_key, CARD_CERT_DOMAIN + body, signature):
        raise CertificateError("card certificate is not signed by this issuer")
    return cert


def issue_balance_certificate(signing_key: ec.EllipticCurvePrivateKey, cert: BalanceCertificate) -> bytes:
    if cert.valid_until.tzinfo is None:
        raise ValueError("valid_until must be timezone-aware")
    return _signed(TAG_BALANCE_CERT, BALANCE_CERT_DOMAIN, cert.body(), signing_key)


def decode_balance_certificate(blob: bytes) -> BalanceCertificate:
    """Parse without checking the signature (the card enforces the ceiling it reads here)."""
    _, value, _ = _split_signed(blob, TAG_BALANCE_CERT, TAG_BALANCE_CERT_BODY)
    fields = tlv.as_dict(
        value, required=(TAG_SERIAL, TAG_PRODUCT, TAG_CEILING, TAG_VALID_UNTIL, TAG_ISSUED_COUNTER)
    )
    seconds = tlv.uint(fields[TAG_VALID_UNTIL], 8, "valid until")
    try:
        valid_until = dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise MalformedDataError("valid until is out of range") from exc
    return BalanceCertificate(
        serial=tlv.text(fields[TAG_SERIAL], "serial", max_len=SERIAL_MAX_LEN),
        product_code=tlv.text(fields[TAG_PRODUCT], "product code"),
        ceiling_qty=tlv.uint(fields[TAG_CEILING], 4, "ceiling"),
        valid_until=valid_until,
        issued_counter=tlv.uint(fields[TAG_ISSUED_COUNTER], 4, "issued counter"),
    )


def verify_balance_certificate(
    signing_public_key: ec.EllipticCurvePublicKey, blob: bytes
) -> BalanceCertificate:
    body, _, signature = _split_signed(blob, TAG_BALANCE_CERT, TAG_BALANCE_CERT_BODY)
    cert = decode_balance_certificate(blob)
    if not verify(signing_public_key, BALANCE_CERT_DOMAIN + body, signature):
        raise CertificateError("balance certificate is not signed by the backend")
    return cert
