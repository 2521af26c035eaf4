"""Settings of card authentication (prefix ``CARD_CARDAUTH_``): key files, challenge life, offline limits.

The two private keys are configuration, never data: paths to PEM files. For the demo and the tests
they are generated under ``var/keys`` on first use (``generate_missing_keys``); a deployment points
the paths at keys provisioned by the issuer and turns generation off, so a missing key is an error.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from reader_agent import keys


class CardAuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARD_CARDAUTH_", env_file=".env", extra="ignore")

    issuer_key_path: Path = Path("var/keys/issuer.pem")
    certificate_key_path: Path = Path("var/keys/balance-certificate.pem")
    generate_missing_keys: bool = True
    challenge_ttl_s: int = 60
    # Offline: a card may draw at most this share of its available quota, and at most the product's
    # ceiling when one is set, until the certificate expires (DESIGN invariant 6). At most 100: a
    # certificate never lets a point hand out more than one online redemption would be granted.
    offline_share_percent: int = Field(default=50, ge=0, le=100)
    offline_ceilings_qty: dict[str, int] = {}
    offline_valid_hours: int = 72

    def issuer_key(self) -> ec.EllipticCurvePrivateKey:
        return _load(self.issuer_key_path, self.generate_missing_keys)

    def certificate_key(self) -> ec.EllipticCurvePrivateKey:
        return _load(self.certificate_key_path, self.generate_missing_keys)

    def offline_ceiling_qty(self, product_code: str, available_qty: int) -> int:
        share = available_qty * self.offline_share_percent // 100
        cap = self.offline_ceilings_qty.get(product_code)
        return max(0, min(share, cap) if cap is not None else share)


@lru_cache(maxsize=8)
def _load(path: Path, generate: bool) -> ec.EllipticCurvePrivateKey:
    return keys.load_or_create_private_key(path) if generate else keys.load_private_key(path)


@lru_cache(maxsize=1)
def get_cardauth_settings() -> CardAuthSettings:
    return CardAuthSettings()
