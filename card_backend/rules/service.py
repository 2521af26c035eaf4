"""Use cases of the rules API: products, versioned rules, simulation, explain, opening, batch report.

Services never commit: the request's session does, once. Business rules live in ``quota``; this
layer maps names to errors and gathers what the domain functions need from the repositories.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from card_backend.config import Settings
from card_backend.errors import Conflict, DomainError, InvalidInput, NotFound, UnknownGovernorate
from quota import ledger_repository, opening, population, rules_repository
from quota import opening_repository as allowances
from quota.domain import batches, entitlement
from quota.domain import explain as explaining
from quota.domain import simulate as simulating
from quota.domain.eligibility import HolderColumns
from quota.domain.periods import last_season, window
from quota.domain.rules import ProductSpec, Rule
from quota.models import Product, RuleVersion

_audit = structlog.get_logger("card.audit")


class ProductExists(Conflict):
    code = "product_exists"


class ProductNotFound(NotFound):
    code = "product_not_found"


class ProductInUse(Conflict):
    """The unit and the price basis say what every stored quantity and tier price of a product means:
    once anything refers to the product they stay (a corrected product is a new product code)."""

    code = "product_in_use"


class ProductInactive(Conflict):
    code = "product_inactive"


class UnknownProduct(InvalidInput):
    code = "unknown_product"


class NotAPointsProduct(InvalidInput):
    """``unused.points_product`` names a product not counted in ``point`` (unused rice became gasoline)."""

    code = "not_a_points_product"


class RuleExists(Conflict):
    code = "rule_exists"


class RuleIdentityChanged(Conflict):
    """A code keeps its product and holder type: another one is another rule (a new code)."""

    code = "rule_identity_changed"


class RuleEditConflict(Conflict):
    """Another administrator saved a version of the rule since this edit read it."""

    code = "rule_edit_conflict"


class RuleNotFound(NotFound):
    code = "rule_not_found"


class RuleCodeMismatch(InvalidInput):
    code = "rule_code_mismatch"


class HolderNotFound(NotFound):
    code = "holder_not_found"


class InvalidPeriodKey(InvalidInput):
    code = "invalid_period_key"


class NoSeason(InvalidInput):
    code = "no_batch_season"


class SeasonPruned(Conflict):
    """The season's stored grants were dropped (retention): who drew nothing can no longer be told."""

    code = "season_grants_pruned"


def add_product(session: Session, spec: ProductSpec, active: bool) -> Product:
    if rules_repository.get_product(session, spec.code) is not None:
        raise ProductExists(f"product {spec.code!r} exists")
    return rules_repository.add_product(session, spec, active)


FIXED_ONCE_USED = ("unit", "price_per_qty")
"""Product fields that give stored quantities and rule tier prices their meaning."""


def update_product(session: Session, code: str, changes: dict[str, Any], actor: str) -> Product:
    """Correct a product's names, prices, walk-in flag or activity. Products have no versions (rules do):
    the change is logged once committed as a ``product_changed`` JSON line (logger ``card.audit``) with
    the actor and each field's old and new value."""
    product = rules_repository.get_product(session, code, for_update=True)
    if product is None:
        raise ProductNotFound(f"no product {code!r}")
    changed = {k: (getattr(product, k), v) for k, v in changes.items() if getattr(product, k) != v}
    fixed = [k for k in FIXED_ONCE_USED if k in changed]
    if fixed:
        referrer = rules_repository.product_referrer(session, code)
        if referrer is not None:
            raise ProductInUse(
                f"{' and '.join(fixed)} of {code!r} cannot change once {referrer} name it (their quantities "
                "and prices are in its unit and price basis): add a new product instead"
            )
    for key, (_, new) in changed.items():
        setattr(product, key, new)
    session.flush()
    if changed:
        record = {k: {"old": old, "new": new} for k, (old, new) in changed.items()}
        event.listen(
            session,
            "after_commit",
            lambda _: _audit.info("product_changed", product=code, actor=actor, changes=record),
            once=True,
        )
    return product


_REFUSALS: dict[str, type[DomainError]] = {
    "unknown_product": UnknownProduct,
    "product_inactive": ProductInactive,
    "not_a_points_product": NotAPointsProduct,
    "unknown_governorate": UnknownGovernorate,
    "rule_identity_changed": RuleIdentityChanged,
}


def _check(
    session: Session, settings: Settings, rule: Rule, previous: RuleVersion | None, *, saving: bool = True
) -> None:
    """``rules_repository.check_rule`` (the one check rule files get too), its refusal as the API's error."""
    try:
        rules_repository.check_rule(session, rule, previous, settings.governorates, saving=saving)
    except rules_repository.RuleRefused as exc:
        raise _REFUSALS[exc.code](exc.detail) from exc


def _insert(session: Session, rule: Rule, actor: str, version: int, lost: DomainError) -> RuleVersion:
    """Add ``version`` of the rule; ``lost`` if a concurrent save took that number first (the unique
    (code, version) constraint: PostgreSQL's insert waits for the other transaction, SQLite's for the
    write lock, then fails). The request's transaction then rolls back: nothing is stored."""
    try:
        return rules_repository.add_version(session, rule, actor, version)
    except IntegrityError as exc:
        raise lost from exc


def create_rule(session: Session, settings: Settings, rule: Rule, actor: str) -> RuleVersion:
    """A new code: version 1, or 409 ``rule_exists`` (also when another administrator's POST of the same
    code commits first: it is never stacked as version 2 of theirs)."""
    exists = RuleExists(f"rule {rule.code!r} exists: PUT a new version")
    if rules_repository.versions(session, rule.code):
        raise exists
    _check(session, settings, rule, None)
    return _insert(session, rule, actor, 1, exists)


def new_version(
    session: Session,
    settings: Settings,
    code: str,
    rule: Rule,
    actor: str,
    expected_version: int | None = None,
) -> tuple[RuleVersion, bool]:
    """Editing a rule stores a new version; periods already opened keep theirs. Returns (version, stored):
    a body identical to the newest version stores nothing and returns that version (a repeated PUT must
    not make the next opening move every rolling allowance to a copy).

    ``expected_version`` (optional): the newest version the edit was made on; another one is 409
    ``rule_edit_conflict``, as is losing a race with a concurrent save of the same code."""
    if rule.code != code:
        raise RuleCodeMismatch(f"body code {rule.code!r} is not {code!r}")
    found = rules_repository.versions(session, code)
    if not found:
        raise RuleNotFound(f"no rule {code!r}")
    newest = found[-1]
    if newest.body == rule.model_dump(mode="json"):
        return newest, False
    if expected_version is not None and expected_version != newest.version:
        raise RuleEditConflict(
            f"rule {code!r} is at version {newest.version}, not {expected_version}: read it again and "
            "redo the edit on it"
        )
    _check(session, settings, rule, newest)
    lost = RuleEditConflict(
        f"another version of rule {code!r} was saved while this edit was made on version {newest.version}: "
        "read it again and redo the edit on it"
    )
    return _insert(session, rule, actor, newest.version + 1, lost), True


def rule_versions(session: Session, code: str) -> list[RuleVersion]:
    found = rules_repository.versions(session, code)
    if not found:
        raise RuleNotFound(f"no rule {code!r}")
    return found


def _now(at: datetime | None) -> datetime:
    return (at or datetime.now(UTC)).astimezone(UTC) if (at is None or at.tzinfo) else at.replace(tzinfo=UTC)


def simulate(
    session: Session, settings: Settings, proposed: Sequence[Rule] | None, at: datetime | None, compare: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    when = _now(at)
    day = when.astimezone(settings.zone).date()
    current = [r for _, r in rules_repository.current(session, day)]
    rules = list(proposed) if proposed is not None else current
    for rule in rules:
        _check(session, settings, rule, None, saving=False)
    types = {r.holder_type for r in [*rules, *current]}
    ages = entitlement.needs_member_ages([*rules, *current])
    pops = population.load(session.connection(), types, day, settings.governorates, ages=ages)
    prices = rules_repository.prices(session)
    baseline = current if compare and proposed is not None else None
    conn, runs = session.connection(), dict[Any, Any]()  # runs: grant runs read once for every rule

    def carry(res: entitlement.RuleResult) -> simulating.Rollover | None:
        # the opening's own carry-over computation (it reads, never writes)
        ppq = prices[res.rule.product].price_per_qty if res.rule.product in prices else 1
        return opening.carry_over(conn, res, res.cols.ids, ppq, settings.zone, runs)

    sim, base = simulating.simulate(rules, pops, prices, when, baseline, settings.zone, carry)
    difference = simulating.difference(sim, base) if base else None
    return {
        "at": when,
        "lines": sim.lines,
        "totals": list(sim.totals().values()),
        "current": base.lines if base else None,
        "difference": difference,
        "difference_totals": simulating.national(difference) if difference is not None else None,
        "changes": sim.changes,
        "seconds": time.perf_counter() - started,
    }


def explain(
    session: Session,
    settings: Settings,
    holder_type: str,
    holder_id: int,
    at: datetime | None,
    point_code: str | None,
) -> list[dict[str, Any]]:
    """Why each rule of the holder's type applies or not, with the allowance meters that decide now.

    The allowance shown is the one the ledger serves (per product, the latest started row if it is
    current), on the entry of the version that opened it; calendar and season rules are judged on the
    registry as of their window's first day, as the opening judged them (``quota.domain.explain``)."""
    when = _now(at)
    day = when.astimezone(settings.zone).date()
    conn = session.connection()
    holder = population.one(conn, holder_type, holder_id, day, settings.governorates)
    if holder is None:
        raise HolderNotFound(f"no {holder_type} {holder_id}")
    rows = ledger_repository.allowances_of_holder(conn, holder_type, holder_id)
    latest = explaining.ledger_rows(rows, when)
    versions = rules_repository.by_ids(session, sorted({a.rule_version_id for a in latest.values()}))
    rules = dict((r.code, (vid, r)) for vid, r in rules_repository.current(session, day))
    for row in explaining.serving(latest.values(), versions, when):
        # a served allowance is decided by the version it was opened with
        opened_with = versions[row.rule_version_id]
        rules[opened_with.code] = (row.rule_version_id, opened_with)

    def holder_on(on: date) -> HolderColumns:  # the registry as of a period's first day (explain caches)
        return population.one(conn, holder_type, holder_id, on, settings.governorates) or holder

    opened: set[tuple[str, datetime]] = set()  # calendar and season periods opened (for "not opened yet")
    for _, rule in rules.values():
        win = window(rule.period, when, settings.zone)
        if rule.holder_type != holder_type or rule.period.kind == "rolling" or win is None:
            continue
        if allowances.openings(conn, holder_type, rule.product, win.start):
            opened.add((rule.product, win.start))
    prices = {code: p.price_per_qty for code, p in rules_repository.prices(session).items()}
    return explaining.explain(holder, list(rules.values()), when, rows, point_code, tz=settings.zone,
                              holder_on=holder_on, price_per_qty=prices, opened_periods=opened)


def open_period(
    session: Session, settings: Settings, at: datetime | None, period_key: str | None, actor: str
) -> opening.OpeningReport:
    when = None if period_key else _now(at)
    if period_key:
        try:
            opening.at_of(period_key)
        except ValueError as exc:
            raise InvalidPeriodKey(str(exc)) from exc
    return opening.open_period(
        session, at=when, period_key=period_key, governorates=settings.governorates, opened_by=actor,
        tz=settings.zone, now=datetime.now(UTC),  # a period opened ahead leaves some rules to their day
    )


def unserved(session: Session, settings: Settings, product: str, at: datetime | None) -> dict[str, Any]:
    """Holders who drew none of a batch-released product last season (next season's priority list)."""
    when = _now(at)
    day = when.astimezone(settings.zone).date()
    rules = [r for _, r in rules_repository.current(session, day) if r.product == product and r.batches]
    if not rules:
        raise NoSeason(f"no current batch rule for {product!r}")
    rule = rules[0]
    last = last_season(rule.period, when, settings.zone)
    if last is None:
        raise NoSeason(f"{product!r} has no previous season")
    pruned_at = allowances.grants_pruned_at(session.connection(), rule.holder_type, product, last.start)
    if pruned_at is not None:
        raise SeasonPruned(f"the grants of {product!r} from {last.start.date()} were pruned on "
                           f"{pruned_at.date()} (CARD_GRANTS_KEEP_DAYS)")
    hid, used = allowances.period_rows(session.connection(), rule.holder_type, product, last.start)
    return {
        "product": product,
        "period_start": last.start,
        "holder_type": rule.holder_type,
        "holder_ids": batches.unserved(hid, used).tolist(),
    }
