"""Configuration from the environment (prefix ``CARD_``) with zero-configuration defaults.

The default database is an embedded SQLite file under ``var/`` so that one point or a laptop runs with
nothing to set up; a ministry deployment sets ``CARD_DATABASE_URL`` to PostgreSQL.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SYRIA_GOVERNORATES: tuple[str, ...] = (
    "damascus",
    "rif_dimashq",
    "aleppo",
    "homs",
    "hama",
    "latakia",
    "tartus",
    "idlib",
    "raqqa",
    "deir_ez_zor",
    "hasakah",
    "daraa",
    "as_suwayda",
    "quneitra",
)

VAR_DIR = Path("var")


def _jwt_secret_default() -> SecretStr:
    """A secret kept in ``var/`` so tokens survive a restart without one sitting in the repo."""
    path = VAR_DIR / "jwt.secret"
    try:
        return SecretStr(path.read_text().strip())
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return SecretStr(value)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARD_", env_file=".env", extra="ignore")

    database_url: str = f"sqlite:///{VAR_DIR / 'smartcard.sqlite3'}"
    governorates: tuple[str, ...] = SYRIA_GOVERNORATES
    jwt_secret: SecretStr = Field(default_factory=_jwt_secret_default)
    jwt_algorithm: str = "HS256"
    access_token_minutes: int = 60
    # Redemption engine group commit: at most this many items per transaction, waiting at most this long.
    group_max_items: int = 512
    group_max_wait_ms: float = 2.0
    # Writer threads per API process: one keeps groups large and leaves the GIL to the event loop
    # (measured: 2,040 vs 1,800 redemptions/s over HTTP with 2 uvicorn workers); SQLite always uses one.
    group_writers: int = 1
    hold_ttl_s: int = 15 * 60
    # Top-ups (``POST /api/v1/topups``), in percent of the allowance's base quantity for its period: one
    # top-up at most ``topup_max_percent``, a period's top-ups together at most
    # ``topup_period_max_percent`` (100: a registrar can at most double a ration; a request's own
    # ``cap_qty`` binds too when tighter). Beyond: ``exceeds_allowance``. Unit-free, so one bound fits
    # litres, grams and cylinders alike; 0 disables top-ups.
    topup_max_percent: int = Field(default=100, ge=0, le=10_000)
    topup_period_max_percent: int = Field(default=100, ge=0, le=10_000)
    # A reader agent's undelivered advice is taken this long after its debit (the offline certificates'
    # 72 h): later, 409 ``advice_too_late`` and the agent reports a conflict for a supervisor. 0: no limit.
    undelivered_advice_max_hours: int = Field(default=72, ge=0, le=24 * 366)
    db_pool_size: int = 10
    log_json: bool = True
    # Messages to families (quota.notify): an HTTP SMS gateway when a URL is set, else a file under var/.
    sms_gateway_url: str | None = None
    sms_gateway_token: SecretStr | None = None
    messages_outbox_path: Path = VAR_DIR / "messages.outbox"
    # Background jobs (``cardctl worker``): each runs every so many seconds, bounded both ways.
    worker_holds_interval_s: float = Field(default=5.0, ge=0.1, le=3600)
    worker_messages_interval_s: float = Field(default=2.0, ge=0.1, le=3600)
    worker_seal_interval_s: float = Field(default=60.0, ge=1.0, le=86_400)
    # How often the worker checks for periods that have begun (a day's bread, a new week or month) and
    # opens them; 0 leaves opening to ``cardctl period open``.
    worker_periods_interval_s: float = Field(default=300.0, ge=0.0, le=86_400)
    # Stored grants (an opened period's untouched allowances, PostgreSQL) are dropped this many days
    # after their period ended and the next one opened; 0 keeps them for ever. 400 keeps a year and a
    # season: the unserved report reads the last season's. About 20 MB per day of daily bread per
    # 5 M families, 50 MB per monthly opening of 6 products per 1 M (docs/operations.md).
    grants_keep_days: int = Field(default=400, ge=0, le=36_500)
    # The worker's ledger audit (journal verified, allowances reconciled with it; findings logged as
    # errors): every so many seconds, 0 never. It reads the whole journal: daily, off the hot hours.
    worker_audit_interval_s: float = Field(default=86_400.0, ge=0.0, le=31_622_400)
    # The public lost-card form: failed reports allowed per hour on one card serial, and from one client
    # address, before it answers 429 (guessing a family's national IDs to block its card).
    lost_report_failures_per_serial: int = Field(default=5, ge=1, le=10_000)
    lost_report_failures_per_client: int = Field(default=30, ge=1, le=100_000)
    # Walk-in sales: a product's cap per point per local day when no cap is set for it (walk_in_caps).
    walk_in_daily_cap_qty: int = Field(default=0, ge=0, le=10**12)
    # The local day of walk-in caps; unset, the deployment's (``timezone``).
    walk_in_timezone: str | None = None
    # The deployment's local calendar (an IANA zone): a day's bread, a week from Monday and a month begin
    # at local midnight when periods are opened (by the worker, ``cardctl period open`` or the API).
    timezone: str = "Asia/Damascus"

    @field_validator("timezone", "walk_in_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Damascus)") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def walk_in_zone(self) -> str:
        return self.walk_in_timezone or self.timezone


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
