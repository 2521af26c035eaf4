"""HTTP for card authentication: tap challenge/verify, card-signed redemption, key registration.

Device-only routes (a reader agent enrolled at a point) except key registration (registrars) and the
public keys (any signed-in caller). The signed redemption is ``async`` like the ledger's: its own
evidence is committed first (one short unit of work), then the ledger's group commit applies it.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from card_backend.auth.deps import require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.cardauth import service
from card_backend.cardauth.errors import CardUnknown, WrongPoint
from card_backend.cardauth.repository import CardAuthRepository
from card_backend.cardauth.schemas import (
    BalanceCertificateOut,
    CardCertificateOut,
    ChallengeOut,
    KeyIn,
    PointNameOut,
    ProductNameOut,
    PublicKeysOut,
    SignedOutcomeOut,
    SignedRedemptionIn,
    VerifiedOut,
    VerifyIn,
)
from card_backend.cardauth.settings import CardAuthSettings, get_cardauth_settings
from card_backend.db import session_scope
from card_backend.deps import SessionDep
from card_backend.ledger.endpoints import LedgerDep
from card_backend.ledger.errors import LedgerBusy, LedgerRefused
from card_backend.ledger.schemas import OutcomeOut, QuotaLineOut
from quota.engine import EngineBusy
from quota.redemption import Outcome, Redemption
from quota.service import LedgerService
from reader_agent import keys

router = APIRouter(prefix="/api/v1/card-auth", tags=["card authentication"])
Device = Annotated[Principal, Depends(require_roles(Role.DEVICE))]
Registrar = Annotated[Principal, Depends(require_roles(Role.REGISTRAR))]
Anyone = Annotated[Principal, Depends(require_roles(*Role))]


async def get_settings(request: Request) -> CardAuthSettings:
    """Tests and the demo may put their own settings on ``app.state.cardauth_settings``."""
    settings = getattr(request.app.state, "cardauth_settings", None)
    return settings if isinstance(settings, CardAuthSettings) else get_cardauth_settings()


SettingsDep = Annotated[CardAuthSettings, Depends(get_settings)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _balance_out(issued: service.IssuedBalance) -> BalanceCertificateOut:
    return BalanceCertificateOut(
        product_code=issued.product_code,
        ceiling_qty=issued.ceiling_qty,
        valid_until=issued.valid_until,
        certificate_hex=issued.certificate.hex(),
    )


def _certificates(
    settings: CardAuthSettings,
    ledger: LedgerService,
    serial: str,
    counter: int,
    products: list[str],
    only: str | None = None,
    pending: dict[str, int] | None = None,
    point_code: str | None = None,
) -> tuple[list[QuotaLineOut], list[BalanceCertificateOut]]:
    """The card's quota lines as a redemption at ``point_code`` (the tapping device's point) would be
    decided now, and a certificate per product the point serves: the offline ceiling is a share of what
    one online redemption here would be granted (``available_now_qty``: nothing while the minimum gap
    runs, a pump hold is pending or the card is tied to another station; at most the fill cap), less
    offline spending not yet synced, so an offline point never hands out what the ledger would refuse."""
    now = ledger.clock()  # the ledger's time decides periods, so certificates follow it too
    lines = ledger.quota_for_card(serial, now, point_code) or []
    quota = [QuotaLineOut.model_validate(line, from_attributes=True) for line in lines]
    certificates = [
        _balance_out(
            service.balance_certificate(
                settings,
                serial=serial,
                product_code=line.product_code,
                available_qty=max(line.available_now_qty - (pending or {}).get(line.product_code, 0), 0),
                period_end=line.period_end,
                counter=counter,
                now=now,
            )
        )
        for line in quota
        if line.product_code in products and (only is None or line.product_code == only)
    ]
    return quota, certificates


def outcome_out(outcome: Outcome) -> OutcomeOut:
    return OutcomeOut(
        id=outcome.entry_id,
        result=outcome.result,
        quantity_qty=outcome.quantity_qty,
        remaining_qty=outcome.remaining_qty,
        price_minor=outcome.price_minor,
        possible_at=outcome.possible_at,
        replayed=outcome.replayed,
    )


@router.post("/challenge", response_model=ChallengeOut)
def challenge(session: SessionDep, settings: SettingsDep, principal: Device) -> ChallengeOut:
    """A fresh random challenge for INTERNAL AUTHENTICATE, valid for one tap at this device."""
    device_id, _, _ = service.device_point(CardAuthRepository(session), principal)
    row = service.new_challenge(session, settings, device_id, _now())
    return ChallengeOut(challenge_id=row.id, challenge_hex=row.challenge.hex(), expires_at=row.expires_at)


@router.post("/verify", response_model=VerifiedOut, responses={409: {"description": "card refused"}})
def verify(
    body: VerifyIn, session: SessionDep, settings: SettingsDep, principal: Device, ledger: LedgerDep,
    request: Request,
) -> VerifiedOut:
    """Check the card's answer (signature with its registered key, counter above the last seen)."""
    device_id, point_code, products = service.device_point(CardAuthRepository(session), principal)
    card = service.verify_tap(
        session,
        device_id=device_id,
        challenge_id=body.challenge_id,
        serial=body.card_serial,
        counter=body.counter,
        signature=bytes.fromhex(body.signature_hex),
        now=_now(),
    )
    pending = service.pending_offline_qty(
        session,
        settings,
        card.serial,
        [(bytes.fromhex(b.certificate_hex), b.spent_qty) for b in body.offline_balances],
    )
    quota, certificates = _certificates(
        settings, ledger, card.serial, body.counter, products, pending=pending, point_code=point_code
    )
    return VerifiedOut(
        card_serial=card.serial,
        holder_type=card.holder_type,
        holder_id=card.holder_id,
        counter=body.counter,
        quota=quota,
        balance_certificates=certificates,
        # For the receipt: the names and units of what this tap can draw, and the zone of local times.
        products=[
            ProductNameOut.model_validate(p, from_attributes=True)
            for p in service.products_named(session, {*products, *(line.product_code for line in quota)})
        ],
        timezone=request.app.state.settings.timezone,
        point=_point_names(session, principal),
    )


def _point_names(session: Session, principal: Principal) -> PointNameOut | None:
    names = service.point_names(CardAuthRepository(session), principal)
    return None if names is None else PointNameOut(code=names[0], name_ar=names[1], name_en=names[2])


@router.post("/redeem", response_model=SignedOutcomeOut, responses={409: {"description": "refused"}})
async def redeem_signed(
    body: SignedRedemptionIn, request: Request, settings: SettingsDep, principal: Device, ledger: LedgerDep
) -> SignedOutcomeOut:
    """Debit with the card's signature over this very transaction; retries with the same id replay."""
    debit = service.SignedDebit(
        body.id,
        body.card_serial,
        body.product_code,
        body.quantity_qty,
        body.point_code,
        body.counter,
        bytes.fromhex(body.signature_hex),
    )
    factory = request.app.state.session_factory

    def record() -> list[str]:
        with session_scope(factory) as session:
            repo = CardAuthRepository(session)
            device_id, point_code, products = service.device_point(repo, principal)
            if body.point_code != point_code:
                raise WrongPoint(f"this device belongs to point {point_code}")
            service.record_signed_debit(session, debit, device_id=device_id, mode="online", now=_now())
            return products

    products = await run_in_threadpool(record)
    redemption = Redemption(
        str(body.id), body.card_serial, body.product_code, body.quantity_qty, body.point_code
    )
    try:
        outcome = await ledger.group_engine().redeem_async(redemption)
    except EngineBusy as exc:
        raise LedgerBusy("too many redemptions in flight; retry with the same id") from exc

    def settle() -> None:
        with session_scope(factory) as session:
            status = "posted" if outcome.ok else "refused"
            service.set_outcome(session, str(body.id), status, outcome.result)

    await run_in_threadpool(settle)
    answer = outcome_out(outcome)
    if not outcome.ok:
        raise LedgerRefused(answer.model_dump(mode="json"), code=outcome.result)
    _, certificates = await run_in_threadpool(
        _certificates, settings, ledger, body.card_serial, body.counter, products, body.product_code,
        None, body.point_code,  # the device's own point (checked in ``record``)
    )
    return SignedOutcomeOut(
        **answer.model_dump(), balance_certificate=certificates[0] if certificates else None
    )


@router.post("/cards/{serial}/key", response_model=CardCertificateOut)
def register_key(
    serial: str, body: KeyIn, session: SessionDep, settings: SettingsDep, _: Registrar
) -> CardCertificateOut:
    """Record a personalised card's public key; answers the issuer's certificate to write on the card."""
    if CardAuthRepository(session).card(serial) is None:
        raise CardUnknown({"serial": serial})
    cert = service.register_key(session, settings, serial, bytes.fromhex(body.public_key_hex), _now().date())
    return CardCertificateOut(card_serial=serial, card_certificate_hex=cert.hex())


@router.get("/keys", response_model=PublicKeysOut)
def public_keys(settings: SettingsDep, _: Anyone) -> PublicKeysOut:
    """The issuer's and the certificate key's public halves (never the private keys)."""
    return PublicKeysOut(
        issuer_public_key_pem=keys.public_key_pem(settings.issuer_key().public_key()),
        certificate_public_key_pem=keys.public_key_pem(settings.certificate_key().public_key()),
    )
