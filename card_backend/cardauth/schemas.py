"""Bodies of the card authentication API. Binary values travel as lowercase hex."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from card_backend.ledger.schemas import OutcomeOut, QuotaLineOut
from card_backend.types import Code

Hex = Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2})+$", max_length=1024)]
Serial = Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,16}$")]
Counter = Annotated[int, Field(ge=1, le=0xFFFFFFFF)]
PositiveQty = Annotated[int, Field(gt=0, le=0xFFFFFFFF)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChallengeOut(BaseModel):
    challenge_id: str
    challenge_hex: str
    expires_at: datetime


class OfflineBalanceIn(_In):
    """A balance record as read from the card: the backend's certificate and what was spent since."""

    certificate_hex: Hex
    spent_qty: Annotated[int, Field(ge=0, le=0xFFFFFFFF)]


class VerifyIn(_In):
    challenge_id: Annotated[str, Field(min_length=1, max_length=36)]
    card_serial: Serial
    counter: Counter
    signature_hex: Hex
    offline_balances: Annotated[list[OfflineBalanceIn], Field(max_length=8)] = Field(
        default_factory=list,
        description="The card's balance records: offline spending not yet synced lowers the new ceilings.",
    )


class BalanceCertificateOut(BaseModel):
    product_code: str
    ceiling_qty: int
    valid_until: datetime
    certificate_hex: str


class ProductNameOut(BaseModel):
    """A product as a receipt names it: its Arabic and English names and the unit of its quantities."""

    code: str
    name_ar: str
    name_en: str
    unit: str = Field(description="ml, g, piece, bundle, ...: quantities are whole numbers of it.")


class PointNameOut(BaseModel):
    """The tapping point as its families know it (the receipt and the family's message name it so)."""

    code: str
    name_ar: str
    name_en: str


class VerifiedOut(BaseModel):
    """A genuine card: who it serves, what it may still draw, and its offline allowances."""

    card_serial: str
    holder_type: str
    holder_id: int
    counter: int
    quota: list[QuotaLineOut]
    balance_certificates: list[BalanceCertificateOut]
    products: list[ProductNameOut] = Field(
        description="The point's products and the card's quota lines' products, for the citizen's receipt."
    )
    timezone: str = Field(
        description="The deployment's zone (CARD_TIMEZONE, an IANA name): receipts give local times in it."
    )
    point: PointNameOut | None = Field(None, description="The tapping point's names, for the receipt.")


class SignedRedemptionIn(_In):
    id: UUID = Field(description="Made by the agent and stored in its outbox before sending.")
    card_serial: Serial
    product_code: Code
    quantity_qty: PositiveQty
    point_code: Code
    counter: Counter = Field(description="The card counter returned by SIGN TRANSACTION.")
    signature_hex: Hex = Field(
        description="The card's signature over the transaction (docs/card-protocol.md)."
    )


class SignedOutcomeOut(OutcomeOut):
    balance_certificate: BalanceCertificateOut | None = None


class KeyIn(_In):
    public_key_hex: Hex = Field(description="The card's P-256 public key: 65-byte point or DER, as hex.")


class CardCertificateOut(BaseModel):
    card_serial: str
    card_certificate_hex: str


class PublicKeysOut(BaseModel):
    """What an agent needs to check cards and offline allowances without the backend."""

    issuer_public_key_pem: str
    certificate_public_key_pem: str
