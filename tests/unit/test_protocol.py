"""The signed formats a backend and an offline agent rely on to trust a card."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reader_agent import protocol
from reader_agent.protocol import BalanceCertificate, CardCertificate, CertificateError, HolderType
from reader_agent.tlv import MalformedDataError

Key = ec.EllipticCurvePrivateKey
RID = uuid.UUID("0b7e7f0e-5a8c-4b8e-9d2a-2f1f3c4d5e6f")


@pytest.fixture(scope="module")
def card_key() -> ec.EllipticCurvePrivateKey:
    return protocol.generate_private_key()


@pytest.fixture(scope="module")
def issuer_key() -> ec.EllipticCurvePrivateKey:
    return protocol.generate_private_key()


def test_card_signature_over_auth_message_verifies_with_its_public_key(card_key: Key) -> None:
    message = protocol.auth_message(b"\x01" * 16, "FAM-0001", 7)
    signature = protocol.sign(card_key, message)
    public = protocol.public_key_bytes(card_key)
    assert len(signature) == 64
    assert protocol.verify_card_signature(public, message, signature)
    assert protocol.verify_card_signature(protocol.public_key_der(public), message, signature)


def test_signature_does_not_carry_over_to_another_counter_serial_or_challenge(card_key: Key) -> None:
    public = protocol.public_key_bytes(card_key)
    signature = protocol.sign(card_key, protocol.auth_message(b"\x01" * 16, "FAM-0001", 7))
    for other in (
        protocol.auth_message(b"\x01" * 16, "FAM-0001", 8),
        protocol.auth_message(b"\x01" * 16, "FAM-0002", 7),
        protocol.auth_message(b"\x02" * 16, "FAM-0001", 7),
    ):
        assert not protocol.verify_card_signature(public, other, signature)


def test_a_clone_with_another_key_fails_verification(card_key: Key) -> None:
    clone = protocol.generate_private_key()
    message = protocol.auth_message(b"\x01" * 16, "FAM-0001", 7)
    assert not protocol.verify_card_signature(
        protocol.public_key_bytes(card_key), message, protocol.sign(clone, message)
    )


def test_garbage_key_or_signature_is_false_not_an_exception() -> None:
    assert not protocol.verify_card_signature(b"\x04" + b"\x00" * 64, b"m", b"\x00" * 64)
    assert not protocol.verify_card_signature(b"junk", b"m", b"\x00" * 64)


def test_tap_signature_cannot_be_replayed_as_a_transaction_signature(card_key: Key) -> None:
    digest = protocol.transaction_digest(RID, "gasoline", 20_000, "ST-1")
    auth = protocol.auth_message(digest, "FAM-0001", 3)
    signature = protocol.sign(card_key, auth)
    tx = protocol.transaction_message(digest, "FAM-0001", 3)
    assert not protocol.verify_card_signature(protocol.public_key_bytes(card_key), tx, signature)


def test_transaction_digest_names_each_field() -> None:
    base = protocol.transaction_digest(RID, "gasoline", 20_000, "ST-1")
    assert base == protocol.transaction_digest(str(RID), "gasoline", 20_000, "ST-1")
    assert len(base) == 32
    others = {
        protocol.transaction_digest(uuid.uuid4(), "gasoline", 20_000, "ST-1"),
        protocol.transaction_digest(RID, "diesel", 20_000, "ST-1"),
        protocol.transaction_digest(RID, "gasoline", 50_000, "ST-1"),
        protocol.transaction_digest(RID, "gasoline", 20_000, "ST-2"),
    }
    assert base not in others and len(others) == 4


def _card_cert(card_key: Key) -> CardCertificate:
    return CardCertificate(
        "FAM-0001", HolderType.FAMILY, protocol.public_key_bytes(card_key), dt.date(2026, 11, 27)
    )


def test_card_certificate_round_trips_and_rejects_other_issuers(card_key: Key, issuer_key: Key) -> None:
    cert = _card_cert(card_key)
    blob = protocol.issue_card_certificate(issuer_key, cert)
    assert protocol.verify_card_certificate(issuer_key.public_key(), blob) == cert
    with pytest.raises(CertificateError):
        protocol.verify_card_certificate(protocol.generate_private_key().public_key(), blob)


def test_tampered_card_certificate_is_refused(card_key: Key, issuer_key: Key) -> None:
    cert = _card_cert(card_key)
    blob = protocol.issue_card_certificate(issuer_key, cert)
    tampered = blob.replace(b"FAM-0001", b"FAM-0009")
    with pytest.raises(CertificateError):
        protocol.verify_card_certificate(issuer_key.public_key(), tampered)


def test_balance_certificate_round_trips(issuer_key: Key) -> None:
    cert = BalanceCertificate(
        "FAM-0001", "gasoline", 40_000, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), issued_counter=12
    )
    blob = protocol.issue_balance_certificate(issuer_key, cert)
    assert len(blob) <= 255  # fits one short UPDATE RECORD
    assert protocol.verify_balance_certificate(issuer_key.public_key(), blob) == cert
    raised = blob.replace((40_000).to_bytes(4, "big"), (90_000).to_bytes(4, "big"))
    with pytest.raises(CertificateError):
        protocol.verify_balance_certificate(issuer_key.public_key(), raised)


def test_certificate_formats_are_not_interchangeable(card_key: Key, issuer_key: Key) -> None:
    cert = _card_cert(card_key)
    blob = protocol.issue_card_certificate(issuer_key, cert)
    with pytest.raises(MalformedDataError):
        protocol.decode_balance_certificate(blob)


def test_card_certificate_fits_one_short_apdu(card_key: Key, issuer_key: Key) -> None:
    cert = CardCertificate(
        "ABCDEFGH12345678", HolderType.VEHICLE, protocol.public_key_bytes(card_key), dt.date.today()
    )
    assert len(protocol.issue_card_certificate(issuer_key, cert)) <= 255
