"""Rules HTTP: products, versioned rules, simulation, explain, period opening, the unserved report.

HTTP only: each route declares who may call it, hands the request to ``service`` and shapes the
answer. Writes are for administrators; supervisors and auditors read, simulate and explain.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy.orm import Session

from card_backend.auth.deps import require_roles
from card_backend.auth.principal import Principal, Role
from card_backend.config import Settings
from card_backend.deps import SessionDep, SettingsDep
from card_backend.rules import service
from card_backend.rules.schemas import (
    DeferredOut,
    OpenedOut,
    OpenIn,
    OpeningOut,
    ProductIn,
    ProductOut,
    ProductPatch,
    RuleEdit,
    RuleVersionOut,
    SimulateIn,
    SimulationOut,
    UnservedOut,
)
from card_backend.types import Id, Moment
from quota import rules_repository
from quota.domain.rules import ProductSpec, Rule
from quota.models import RuleVersion

router = APIRouter(prefix="/api/v1", tags=["rules"])

Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require_roles(Role.SUPERVISOR, Role.AUDITOR))]
Explainer = Annotated[
    Principal, Depends(require_roles(Role.SUPERVISOR, Role.AUDITOR, Role.REGISTRAR, Role.CLERK))
]


@router.get("/products", response_model=list[ProductOut])
def list_products(session: SessionDep, _: Reader) -> list[ProductOut]:
    return [ProductOut.model_validate(p) for p in rules_repository.list_products(session)]


@router.post("/products", response_model=ProductOut, status_code=201)
def create_product(body: ProductIn, session: SessionDep, _: Admin) -> ProductOut:
    spec = ProductSpec.model_validate(body.model_dump(exclude={"active"}))
    return ProductOut.model_validate(service.add_product(session, spec, body.active))


@router.patch(
    "/products/{code}",
    response_model=ProductOut,
    responses={404: {"description": "``product_not_found``"},
               409: {"description": "``product_in_use``: the unit or price basis of a product in use"}},
)
def update_product(
    code: Annotated[str, Path(max_length=32)], body: ProductPatch, session: SessionDep, principal: Admin
) -> ProductOut:
    """Correct a product; fields left out keep their value. Each change is logged with the
    administrator's name and the old and new values (a ``product_changed`` line, logger ``card.audit``).

    What a change reaches, and when:

    - **names**: messages and receipts from now on.
    - **free_price_minor** (the non-subsidised price): the next walk-in sale and every simulation.
    - **Subsidised prices are not here**: they are the price tiers of each rule, frozen into the rule
      version an allowance was opened with. Change them with `PUT /api/v1/rules/{code}` (a new version,
      for periods opened afterwards).
    - **unit** and **price_per_qty** (the quantity every price is per): they give stored quantities and
      the rules' tier prices their meaning, so they can be corrected only while no rule version,
      allowance, journal entry or stock delivery names the product; after that: 409 `product_in_use`
      (add a new product instead).
    - **active=false** withdraws the product: no new rule may name it (409 `product_inactive`; a rule
      already on it may still get versions, e.g. to end it), its rules are no longer in force, so no new
      period opens and simulate and explain leave them out; allowances already opened stay redeemable
      until their period ends; walk-in sales of it are refused at once (409 `product_unknown`).
      `active=true` brings it back.
    """
    return ProductOut.model_validate(service.update_product(session, code, body.changes(), principal.actor))


def _shown(session: Session, settings: Settings, rows: Sequence[RuleVersion]) -> list[RuleVersionOut]:
    """Stored versions with what is in force today (the deployment's local day)."""
    live = rules_repository.in_force(session, datetime.now(settings.zone).date())
    return [RuleVersionOut.of(r, live.get(r.code)) for r in rows]


_SAVE_ERRORS: dict[int | str, dict[str, Any]] = {
    409: {"description": "``product_inactive``, ``rule_identity_changed`` (another product or holder type "
                         "needs a new code), ``rule_exists`` / ``rule_edit_conflict`` (another save won)"},
    422: {"description": "``unknown_product`` (the product or the points product), ``not_a_points_product``, "
                         "``unknown_governorate``, ``validation_error``"},
}


@router.get("/rules", response_model=list[RuleVersionOut])
def list_rules(
    session: SessionDep, settings: SettingsDep, _: Reader, all_versions: Annotated[bool, Query()] = False
) -> list[RuleVersionOut]:
    """The newest version of every rule (``all_versions=true``: every version), whatever its dates:
    ``in_force`` tells whether a listed version is the one in force today and ``version_in_force`` which
    one is (a newest version scheduled ahead, or one that ended the rule, is not)."""
    rows = rules_repository.versions(session) if all_versions else rules_repository.latest_versions(session)
    return _shown(session, settings, rows)


@router.get("/rules/{code}", response_model=list[RuleVersionOut])
def rule_versions(code: str, session: SessionDep, settings: SettingsDep, _: Reader) -> list[RuleVersionOut]:
    return _shown(session, settings, service.rule_versions(session, code))


@router.post("/rules", response_model=RuleVersionOut, status_code=201, responses=_SAVE_ERRORS)
def create_rule(body: Rule, session: SessionDep, settings: SettingsDep, principal: Admin) -> RuleVersionOut:
    """A new rule code (version 1). An existing code, even one another administrator saved a moment
    earlier, is 409 ``rule_exists``: edit it with PUT."""
    (row,) = _shown(session, settings, [service.create_rule(session, settings, body, principal.actor)])
    return row


@router.put(
    "/rules/{code}",
    response_model=RuleVersionOut,
    status_code=201,
    responses={**_SAVE_ERRORS, 200: {"description": "The body is the newest version's: nothing stored"}},
)
def edit_rule(
    code: str,
    body: RuleEdit,
    session: SessionDep,
    settings: SettingsDep,
    principal: Admin,
    response: Response,
) -> RuleVersionOut:
    """Store a new version (201); allowances already opened keep the version they were opened with.

    - A body identical to the newest version stores nothing: 200 with that version.
    - The product and holder type are the code's: another one is 409 ``rule_identity_changed`` (a new
      rule with a new code; end this one with ``effective_to``).
    - Another administrator's version saved meanwhile (or a newest version other than the optional
      ``expected_version``) is 409 ``rule_edit_conflict``: read the rule again and redo the edit."""
    row, stored = service.new_version(
        session, settings, code, body.rule(), principal.actor, body.expected_version
    )
    if not stored:
        response.status_code = 200
    (out,) = _shown(session, settings, [row])
    return out


@router.post("/rules/simulate", response_model=SimulationOut)
def simulate(body: SimulateIn, session: SessionDep, settings: SettingsDep, _: Reader) -> SimulationOut:
    """What a rule set (default: the current one) would hand out and cost, next to the current rules.

    Lines are per holder type, governorate, product and period, with per-window figures (carry-over
    and points included, as the opening grants them) and per-year ones; ``difference`` compares the
    per-year figures, so a period edit (a cylinder every 23 → 45 days) shows."""
    result = service.simulate(session, settings, body.rules, body.at, body.compare)
    return SimulationOut.model_validate(result, from_attributes=True)


@router.get("/holders/{holder_type}/{holder_id}/explain")
def explain(
    holder_type: Literal["family", "person", "vehicle"],
    holder_id: Id,
    session: SessionDep,
    settings: SettingsDep,
    _: Explainer,
    at: Annotated[Moment | None, Query()] = None,
    point_code: Annotated[str | None, Query(max_length=32)] = None,
) -> list[dict[str, Any]]:
    """Each rule of the holder's type: predicates with the holder's values, arithmetic, period, tiers,
    and the allowance's fill cap, gap, binding and batch state.

    It tells what the ledger does at `at`:

    - **serving**: true on the one entry per product whose rule version opened the allowance the ledger
      serves now (the latest started row, while its period runs); that entry `applies` and carries
      `allowance` (the meters, a rolling window that has ended shown restarted as the next fill
      restarts it, `available_qty`, and `remaining_by_tier`: what drawing the rest would cost) and the
      `tiers` the ledger prices it with (the first holds base + carried + top-ups). Another version of
      the same product names it in `served_by` and does not apply until the next period.
    - **judged_on**: the day whose registry (exclusions, licences, ages) the predicates were judged on:
      a calendar or season rule's first day of the period (as its opening judged it), a rolling rule
      today. Where today differs, `today` holds today's outcome.
    - **notes**: what the figures alone do not say (`code`, `ar`, `en`): a period not opened yet
      (`period_opened` false; nothing can be drawn), an allowance served under a version that no
      longer matches, an outcome that changed since the period began.
    """
    return service.explain(session, settings, holder_type, holder_id, at, point_code)


@router.post("/periods/open", response_model=OpeningOut)
def open_period(body: OpenIn, session: SessionDep, settings: SettingsDep, principal: Admin) -> OpeningOut:
    report = service.open_period(session, settings, body.at, body.period_key, principal.actor)
    return OpeningOut(
        at=report.at,
        rows=report.rows,
        points_rows=report.points_rows,
        seconds=report.seconds,
        opened=[OpenedOut.model_validate(o, from_attributes=True) for o in report.opened],
        deferred=[DeferredOut.model_validate(d, from_attributes=True) for d in report.deferred],
    )


@router.get("/batches/unserved", response_model=UnservedOut)
def unserved(
    session: SessionDep,
    settings: SettingsDep,
    _: Reader,
    product: Annotated[str, Query(max_length=32)],
    at: Annotated[Moment | None, Query()] = None,
) -> UnservedOut:
    """Holders who drew none of a batch-released product last season: next season's priority list."""
    return UnservedOut.model_validate(service.unserved(session, settings, product, at))
