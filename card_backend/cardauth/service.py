"""Card authentication use cases: tap challenge and verification, key registration, signed debits.

The rules enforced here are DESIGN invariant 7: a card proves itself with an ECDSA signature over a
fresh challenge (tap) or over the transaction digest (debit), always with a counter that only grows.
A signature that does not verify with the card's registered key is ``card_auth_failed`` (a clone);
a genuine one whose counter is not above the last seen is ``counter_replayed``. Offline debits reach
the backend late and out of order, so for them the counter only has to be unused by that card.
Services never commit: the caller's unit of work does.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session

from card_backend.auth.principal import Principal
from card_backend.card.models import Card
from card_backend.cardauth.errors import (
    CardAuthFailed,
    CardBlocked,
    CardUnknown,
    ChallengeExpired,
    ChallengeUnknown,
    CounterReplayed,
    ExistsWithDifferentPayload,
    InvalidPublicKey,
    WrongPoint,
)
from card_backend.cardauth.models import CardChallenge, CardTransaction
from card_backend.cardauth.repository import CardAuthRepository
from card_backend.cardauth.settings import CardAuthSettings
from quota import rules_repository
from quota.models import Product
from reader_agent import protocol
from reader_agent.protocol import BalanceCertificate, CardCertificate, HolderType
from reader_agent.tlv import MalformedDataError

CHALLENGE_BYTES = 16


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were stored as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def new_challenge(
    session: Session, settings: CardAuthSettings, device_id: int, now: dt.datetime
) -> CardChallenge:
    repo = CardAuthRepository(session)
    repo.purge_expired_challenges(now)
    challenge = CardChallenge(
        id=str(uuid.uuid4()),
        challenge=secrets.token_bytes(CHALLENGE_BYTES),
        device_id=device_id,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=settings.challenge_ttl_s),
    )
    repo.add(challenge)
    return challenge


def device_point(repo: CardAuthRepository, principal: Principal) -> tuple[int, str, list[str]]:
    """The calling device's id, its point's code and the products the point serves."""
    if principal.device_id is None or principal.point_id is None:
        raise WrongPoint("only an enrolled device may do this")
    point = repo.point(principal.point_id)
    if point is None:
        raise WrongPoint("the device's point no longer exists")
    return principal.device_id, point.code, list(point.products)


def products_named(session: Session, codes: Collection[str]) -> list[Product]:
    """The products of ``codes`` with their names and units, for the citizen's receipt."""
    return [p for p in rules_repository.list_products(session) if p.code in codes]


def point_names(repo: CardAuthRepository, principal: Principal) -> tuple[str, str, str] | None:
    """The calling device's point as families know it: (code, Arabic name, English name)."""
    point = repo.point(principal.point_id) if principal.point_id is not None else None
    return None if point is None else (point.code, point.name_ar, point.name_en or point.name_ar)


def _active_card_with_key(repo: CardAuthRepository, serial: str) -> tuple[Card, bytes]:
    card = repo.card(serial, for_update=True)
    if card is None:
        raise CardUnknown({"serial": serial})
    if card.state != "active":
        raise CardBlocked({"serial": serial, "state": card.state})
    if not card.public_key:
        raise CardAuthFailed({"serial": serial, "reason": "no public key registered for this card"})
    return card, card.public_key


def verify_tap(
    session: Session,
    *,
    device_id: int,
    challenge_id: str,
    serial: str,
    counter: int,
    signature: bytes,
    now: dt.datetime,
) -> Card:
    """Check a tap answer; on success the card's counter and the challenge are consumed."""
    repo = CardAuthRepository(session)
    challenge = repo.challenge(challenge_id, for_update=True)
    if challenge is None or challenge.device_id != device_id:
        raise ChallengeUnknown({"challenge_id": challenge_id})
    if aware(challenge.expires_at) < now:
        raise ChallengeExpired({"challenge_id": challenge_id})
    card, public_key = _active_card_with_key(repo, serial)
    message = protocol.auth_message(challenge.challenge, serial, counter)
    if not protocol.verify_card_signature(public_key, message, signature):
        raise CardAuthFailed({"serial": serial, "reason": "signature does not match the card's key"})
    if counter <= card.last_counter or challenge.used_at is not None:
        raise CounterReplayed({"serial": serial, "counter": counter, "last_counter": card.last_counter})
    card.last_counter = counter
    challenge.used_at = now
    session.flush()
    return card


@dataclass(frozen=True, slots=True)
class SignedDebit:
    """A redemption as the card signed it (SIGN TRANSACTION)."""

    redemption_id: uuid.UUID
    card_serial: str
    product_code: str
    quantity_qty: int
    point_code: str
    counter: int
    signature: bytes
    happened_at: dt.datetime | None = None

    def same_as(self, row: CardTransaction) -> bool:
        return (row.card_serial, row.product_code, row.quantity_qty, row.point_code, row.counter) == (
            self.card_serial,
            self.product_code,
            self.quantity_qty,
            self.point_code,
            self.counter,
        )

    def message(self) -> bytes:
        digest = protocol.transaction_digest(
            self.redemption_id, self.product_code, self.quantity_qty, self.point_code
        )
        return protocol.transaction_message(digest, self.card_serial, self.counter)


def record_signed_debit(
    session: Session, debit: SignedDebit, *, device_id: int, mode: str, now: dt.datetime
) -> tuple[CardTransaction, Card | None]:
    """Verify the card's consent to a debit and keep it as evidence (idempotent by redemption id).

    Online, the counter must be above the last one seen; offline answers arrive late and out of
    order, so there the counter must only be unused by this card. Offline, a blocked card still gets
    its (already dispensed) debit checked and recorded: the ledger then refuses it into a conflict.
    """
    repo = CardAuthRepository(session)
    existing = repo.transaction(str(debit.redemption_id))
    if existing is not None:
        if not debit.same_as(existing):
            raise ExistsWithDifferentPayload({"id": str(debit.redemption_id)})
        return existing, repo.card(debit.card_serial)
    card = repo.card(debit.card_serial, for_update=True)
    if card is None:
        raise CardUnknown({"serial": debit.card_serial})
    if mode == "online" and card.state != "active":
        raise CardBlocked({"serial": debit.card_serial, "state": card.state})
    if not card.public_key or not protocol.verify_card_signature(
        card.public_key, debit.message(), debit.signature
    ):
        raise CardAuthFailed({"serial": debit.card_serial, "reason": "not signed by this card"})
    if mode == "online" and debit.counter <= card.last_counter:
        raise CounterReplayed({"serial": debit.card_serial, "counter": debit.counter})
    if repo.transaction_with_counter(debit.card_serial, debit.counter) is not None:
        raise CounterReplayed({"serial": debit.card_serial, "counter": debit.counter})
    row = CardTransaction(
        redemption_id=str(debit.redemption_id),
        card_serial=debit.card_serial,
        counter=debit.counter,
        signature=debit.signature,
        product_code=debit.product_code,
        quantity_qty=debit.quantity_qty,
        point_code=debit.point_code,
        device_id=device_id,
        mode=mode,
        status="signed",
        happened_at=debit.happened_at,
        created_at=now,
    )
    repo.add(row)
    card.last_counter = max(card.last_counter, debit.counter)
    session.flush()
    return row, card


def set_outcome(session: Session, redemption_id: str, status: str, result: str) -> None:
    row = CardAuthRepository(session).transaction(redemption_id)
    if row is not None:
        row.status, row.result = status, result
        session.flush()


def register_key(
    session: Session, settings: CardAuthSettings, serial: str, public_key: bytes, today: dt.date
) -> bytes:
    """Record a personalised card's public key and return the issuer's certificate for the card.

    A new key starts a new counter history (a re-personalised card starts at 0 again).
    """
    try:
        point = protocol.public_key_bytes(protocol.load_public_key(public_key))
    except MalformedDataError as exc:
        raise InvalidPublicKey({"serial": serial, "reason": str(exc)}) from exc
    card = CardAuthRepository(session).card(serial, for_update=True)
    if card is None:
        raise CardUnknown({"serial": serial})
    if card.public_key != point:
        card.public_key = point
        card.last_counter = 0
    session.flush()
    cert = CardCertificate(serial, HolderType(card.holder_type), point, today)
    return protocol.issue_card_certificate(settings.issuer_key(), cert)


def pending_offline_qty(
    session: Session, settings: CardAuthSettings, serial: str, balances: list[tuple[bytes, int]]
) -> dict[str, int]:
    """Per product, what the card spent offline under its current certificate and no point has synced.

    Only certificates this backend signed for this card count; a record the card reports is the
    card's own count (INCREASE SPENT), so a point cannot hide offline spending by not syncing.
    """
    signer = settings.certificate_key().public_key()
    repo = CardAuthRepository(session)
    pending: dict[str, int] = {}
    for blob, spent_qty in balances:
        try:
            cert = protocol.verify_balance_certificate(signer, blob)
        except (protocol.CertificateError, MalformedDataError):
            continue
        if cert.serial != serial:
            continue
        synced = repo.synced_offline_qty(serial, cert.product_code, cert.issued_counter)
        pending[cert.product_code] = pending.get(cert.product_code, 0) + max(spent_qty - synced, 0)
    return pending


@dataclass(frozen=True, slots=True)
class IssuedBalance:
    product_code: str
    ceiling_qty: int
    valid_until: dt.datetime
    certificate: bytes


def balance_certificate(
    settings: CardAuthSettings,
    *,
    serial: str,
    product_code: str,
    available_qty: int,
    period_end: dt.datetime | None,
    counter: int,
    now: dt.datetime,
) -> IssuedBalance:
    """What the card may spend offline for one product, signed with the certificate key."""
    until = now + dt.timedelta(hours=settings.offline_valid_hours)
    if period_end is not None:
        until = min(until, aware(period_end))
    ceiling = settings.offline_ceiling_qty(product_code, available_qty)
    cert = BalanceCertificate(serial, product_code, ceiling, until.replace(microsecond=0), counter)
    blob = protocol.issue_balance_certificate(settings.certificate_key(), cert)
    return IssuedBalance(product_code, ceiling, cert.valid_until, blob)
