"""What an agent checks on its own when the backend cannot: the card, and its offline allowances.

With only the issuer's and the certificate key's public keys (fetched once, cached in the outbox),
the agent verifies the card certificate, that the card holds the certified key (a fresh challenge,
signature checked), that its counter moved past the last one this point saw, and which balance
certificates on the card are genuine, for this card and still valid.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from reader_agent import protocol
from reader_agent.apdu import BalanceRecord, CardInfo
from reader_agent.protocol import BalanceCertificate, CertificateError
from reader_agent.tlv import MalformedDataError


class LocalCheckFailed(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


@dataclass
class Balance:
    record: int
    certificate: BalanceCertificate
    blob: bytes
    spent_qty: int

    @property
    def left_qty(self) -> int:
        return max(self.certificate.ceiling_qty - self.spent_qty, 0)


def check_card_certificate(issuer: ec.EllipticCurvePublicKey, info: CardInfo, blob: bytes | None) -> None:
    if blob is None:
        raise LocalCheckFailed("card_auth_failed", "the card carries no issuer certificate")
    try:
        cert = protocol.verify_card_certificate(issuer, blob)
    except (CertificateError, MalformedDataError) as exc:
        raise LocalCheckFailed("card_auth_failed", f"card certificate: {exc}") from exc
    if cert.serial != info.serial or cert.public_key != info.public_key:
        raise LocalCheckFailed("card_auth_failed", "the certificate names another card or key")


def check_answer(info: CardInfo, challenge: bytes, counter: int, signature: bytes, last_seen: int) -> None:
    message = protocol.auth_message(challenge, info.serial, counter)
    if not protocol.verify_card_signature(info.public_key, message, signature):
        raise LocalCheckFailed("card_auth_failed", "the answer is not signed by the card's key")
    if counter <= last_seen:
        raise LocalCheckFailed("counter_replayed", f"counter {counter} not above {last_seen}")


def genuine_balances(
    signer: ec.EllipticCurvePublicKey | None, serial: str, records: dict[int, BalanceRecord], now: dt.datetime
) -> dict[str, Balance]:
    """The valid balance certificates on the card by product (forged, foreign or expired ones are ignored)."""
    found: dict[str, Balance] = {}
    if signer is None:
        return found
    for record, balance in sorted(records.items()):
        try:
            cert = protocol.verify_balance_certificate(signer, balance.certificate)
        except (CertificateError, MalformedDataError):
            continue
        if cert.serial == serial and cert.valid_until > now:
            found[cert.product_code] = Balance(record, cert, balance.certificate, balance.spent_qty)
    return found
