"""Request and response bodies of the rules API. A rule body is the rule language's own model."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from card_backend.types import Moment
from quota.domain.rules import MAX_PRICE_PER_QTY, Price, ProductName, ProductSpec, Rule

Name = ProductName
"""A product's name as the ``products`` columns hold it (80 characters, no control characters)."""
PricePerQty = Annotated[int, Field(ge=1, le=MAX_PRICE_PER_QTY)]
"""``products.price_per_qty`` bounds: a 32-bit ``Integer`` on PostgreSQL."""
FreePrice = Price
"""``products.free_price_minor`` bounds: the rule language's bound on any price (a ``BIGINT`` column), the
same for a new product and a correction."""


class ProductIn(ProductSpec):
    """A new product: the rule file's ``ProductSpec`` (whose names and prices carry the bounds of a
    correction, ``ProductPatch``: SQLite stores nothing PostgreSQL would refuse — an empty or over-long
    name, a NUL, a 2^31 price basis — and the two databases answer the same 422 ``validation_error``)."""

    active: bool = True


class ProductPatch(BaseModel):
    """The fields to change; those left out keep their value (``null`` is refused, not "unset")."""

    model_config = ConfigDict(extra="forbid")

    name_ar: Name | None = None
    name_en: Name | None = None
    unit: Literal["ml", "g", "piece", "bundle", "point"] | None = Field(
        None, description="Fixed once anything refers to the product (409 ``product_in_use``)."
    )
    price_per_qty: PricePerQty | None = Field(
        None,
        description="The quantity every price of the product is per (1000: per litre of ml). Fixed once "
        "anything refers to the product (409 ``product_in_use``).",
    )
    free_price_minor: FreePrice | None = Field(
        None, description="The non-subsidised price per ``price_per_qty``: walk-in sales and simulations."
    )
    walk_in: bool | None = None
    active: bool | None = Field(None, description="false withdraws the product, true brings it back.")

    @model_validator(mode="after")
    def _no_nulls(self) -> ProductPatch:
        nulls = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if nulls:
            raise ValueError(f"leave out what does not change instead of null: {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name_ar: str
    name_en: str
    unit: str
    price_per_qty: int
    free_price_minor: int
    walk_in: bool
    active: bool


class RuleEdit(Rule):
    """``PUT /api/v1/rules/{code}``: the rule, and optionally the version the edit was made on."""

    expected_version: int | None = Field(
        None,
        ge=1,
        description="The newest version when the edit began: if another was saved since, 409 "
        "``rule_edit_conflict`` instead of a new version on top of it. Not stored.",
    )

    def rule(self) -> Rule:
        return Rule.model_validate(self.model_dump(mode="json", exclude={"expected_version"}))


class RuleVersionOut(BaseModel):
    """One stored version of a rule; ``id`` is the ``rule_version_id`` allowances keep."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    version: int
    product_code: str
    holder_type: str
    effective_from: date
    effective_to: date | None
    created_at: datetime | None = None
    created_by: str
    body: dict[str, Any]
    in_force: bool = Field(
        description="This version is the code's version in force today (the deployment's local day): "
        "false for a version scheduled ahead, ended, replaced, or on a withdrawn product."
    )
    version_in_force: int | None = Field(
        description="The code's version in force today, whichever is listed (null: none, e.g. the rule "
        "has ended, has not begun, or its product is withdrawn)."
    )

    @classmethod
    def of(cls, row: Any, live: Any) -> RuleVersionOut:
        """``row`` (a stored version) with ``live``, the version of its code in force today (or None)."""
        fields = {name: getattr(row, name) for name in cls.model_fields if name not in _LIVE}
        return cls.model_validate({
            **fields,
            "in_force": live is not None and live.id == row.id,
            "version_in_force": live.version if live is not None else None,
        })


_LIVE = ("in_force", "version_in_force")


class SimulateIn(BaseModel):
    """A proposed rule set (default: the current one) compared with the rules in force."""

    rules: list[Rule] | None = None
    at: Moment | None = None
    compare: bool = True


class LineOut(BaseModel):
    """One holder type, governorate, product and period: per window (what opening one window grants)
    and per year (the rule's recurring rate × ``windows_per_year``)."""

    holder_type: str
    governorate: str = Field(description="``*`` in ``totals``: summed over governorates.")
    product: str
    period: str = Field(
        description="The rules' period: day, week, month, quarter, year, rolling_<N>d, season_<from>_<to>."
    )
    windows_per_year: float = Field(
        description="365 a day, 365/7 a week, 365/N rolling N days (at most), 12, 4, 1 (year, season)."
    )
    holders: int
    base_qty: int = Field(description="Per window: the first (subsidised) tier.")
    granted_qty: int = Field(description="Per window: base, fixed free-price tiers and carry-over.")
    carried_qty: int = Field(description="Per window: the previous window's unused quantity carried over.")
    points: int = Field(description="Per window: points credited for the previous window's unused quantity.")
    subsidy_minor: int = Field(description="Per window: (base + carried) × (free price − first-tier price).")
    base_qty_per_year: int
    granted_qty_per_year: int = Field(description="Per year, without carry-over (a one-off of one window).")
    subsidy_minor_per_year: int = Field(description="Per year, on base (without carry-over).")


class DeltaOut(BaseModel):
    """Proposed minus current for one holder type, governorate and product, whatever the periods: the
    per-year figures (so a period edit shows), and the next window's carry-over and points."""

    holder_type: str
    governorate: str = Field(description="``*`` in ``difference_totals``: summed over governorates.")
    product: str
    current_periods: list[str] = Field(description="The periods of the current rules' lines (none: no line).")
    proposed_periods: list[str]
    holders: int
    base_qty_per_year: int
    granted_qty_per_year: int
    subsidy_minor_per_year: int
    carried_qty: int = Field(description="The next window's carry-over (a one-off: not annualised).")
    points: int = Field(description="The next window's points for unused quantity (not annualised).")


class ChangeOut(BaseModel):
    holder_type: str
    product: str
    gained_holders: int
    lost_holders: int
    changed_holders: int = Field(description="Holders who keep the product with another period or amount.")


class SimulationOut(BaseModel):
    at: datetime
    lines: list[LineOut]
    totals: list[LineOut]
    current: list[LineOut] | None = None
    difference: list[DeltaOut] | None = None
    difference_totals: list[DeltaOut] | None = None
    changes: list[ChangeOut] = Field(default_factory=list)
    seconds: float


class OpenIn(BaseModel):
    """Open the period containing ``at``, or starting on ``period_key`` (``YYYY-MM`` or ``YYYY-MM-DD``)."""

    at: Moment | None = None
    period_key: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}(-\d{2})?$")


class OpenedOut(BaseModel):
    rule_code: str
    rule_version_id: int
    holder_type: str
    product: str
    period_start: datetime
    period_end: datetime | None
    rows: int
    topped_up: bool
    carried_qty: int
    points: int


class DeferredOut(BaseModel):
    """A rule an opening ahead of its period left to that period's first day (the worker opens it
    then): ``previous_period_running`` — its carry-over or points come from a period still being drawn;
    ``rolling_opens_on_its_day`` — rolling allowances follow the registry day by day."""

    rule_code: str
    rule_version_id: int
    holder_type: str
    product: str
    reason: Literal["previous_period_running", "rolling_opens_on_its_day"]


class OpeningOut(BaseModel):
    at: datetime
    rows: int
    points_rows: int
    seconds: float
    opened: list[OpenedOut]
    deferred: list[DeferredOut] = Field(default_factory=list)


class UnservedOut(BaseModel):
    product: str
    period_start: datetime
    holder_type: str
    holder_ids: list[int]
