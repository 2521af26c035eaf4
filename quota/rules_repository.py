"""Products and rule versions in the database (a repository: every query on these tables is here).

A rule is never edited in place: saving a rule with an existing code stores a new version, and the
allowances opened under an older version keep its id, so a later edit cannot change a period already
opened. The version of a code on a day is its newest (highest) version that has begun by then
(``effective_from`` on or before the day), and the rule is in force only if that version's own
``effective_to`` (if any) covers the day: a new version replaces every older one from its start, so
one with an ``effective_to`` ends the rule, and an older open-ended version does not come back after
that date. A version whose ``effective_from`` is still to come changes nothing until then, so an
administrator can schedule a change (or an end) ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from quota.domain.rules import ProductSpec, Rule, RuleSet, rule_from_body, ruleset_from_yaml
from quota.domain.simulate import ProductPrice
from quota.models import Allowance, JournalEntry, Product, RuleVersion, StockDelivery

# What holds quantities or prices of a product in its unit: a product one of these names keeps its unit
# and price basis (``card_backend.rules.service.update_product``). Small tables first: the first hit ends
# the search, and only a product nothing names scans them all.
_REFERRERS = (
    ("rule versions", RuleVersion.product_code),
    ("stock deliveries", StockDelivery.product_code),
    ("allowances", Allowance.product_code),
    ("journal entries", JournalEntry.product_code),
)


def list_products(session: Session) -> list[Product]:
    return list(session.scalars(select(Product).order_by(Product.code)))


def get_product(
    session: Session, code: str, *, for_update: bool = False, for_share: bool = False
) -> Product | None:
    """``for_update``: lock the row (a product correction); ``for_share``: keep it from changing until
    this transaction ends (a rule saved on it), PostgreSQL only (SQLite writers are serialised anyway)."""
    lock: bool | dict[str, bool] = True if for_update else {"read": True} if for_share else False
    return session.get(Product, code, with_for_update=lock)


def product_referrer(session: Session, code: str) -> str | None:
    """A kind of stored row that names the product (None: nothing was ever recorded in its unit)."""
    for name, column in _REFERRERS:
        if session.scalar(select(exists().where(column == code))):
            return name
    return None


def add_product(session: Session, spec: ProductSpec, active: bool = True) -> Product:
    product = Product(active=active, **spec.model_dump())
    session.add(product)
    session.flush()
    return product


def prices(session: Session) -> dict[str, ProductPrice]:
    rows = session.execute(select(Product.code, Product.price_per_qty, Product.free_price_minor)).all()
    return {code: ProductPrice(ppq, free) for code, ppq, free in rows}


def add_version(session: Session, rule: Rule, created_by: str, version: int | None = None) -> RuleVersion:
    """Store ``rule`` as version ``version`` of its code (default: the next one, 1 for a new code).

    A caller that read the versions first passes the number it expects to add: a concurrent save of the
    same number then fails at the unique (code, version) constraint (``IntegrityError``) instead of
    silently stacking one administrator's edit on another's."""
    if version is None:
        latest = session.scalar(select(func.max(RuleVersion.version)).where(RuleVersion.code == rule.code))
        version = (latest or 0) + 1
    row = RuleVersion(
        code=rule.code,
        version=version,
        product_code=rule.product,
        holder_type=rule.holder_type,
        body=rule.model_dump(mode="json"),
        effective_from=rule.effective_from,
        effective_to=rule.effective_to,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


class RuleRefused(ValueError):
    """A rule the store does not take. ``code`` names the rule broken (the admin API answers it as the
    error code: ``unknown_product``, ``product_inactive``, ``not_a_points_product``,
    ``unknown_governorate``, ``rule_identity_changed``); ``detail`` says what to fix."""

    def __init__(self, code: str, detail: Any) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def check_rule(
    session: Session,
    rule: Rule,
    previous: RuleVersion | None,
    governorates: Sequence[str] | None,
    *,
    saving: bool = True,
) -> None:
    """Raise ``RuleRefused`` unless ``rule`` may be stored as the next version after ``previous`` (None: a
    new code). The one check of every way a rule is saved: the admin API and rule files (``install``).

    - the product, and the points product of a ``points`` policy, exist (``unknown_product``); the
      points product counts in ``point`` (``not_a_points_product``): unused rice never becomes gasoline;
    - a new rule (or a points product a rule did not credit before) is not on a withdrawn product
      (``product_inactive``); a rule already on it may still get versions, e.g. to end it;
    - every ``governorate_in`` name is one of ``governorates`` (the deployment's list; None: not
      checked): a typo would match nobody (``unknown_governorate``);
    - a code keeps its product and holder type (``rule_identity_changed``): the allowances, explain and
      the opening follow a code from version to version, so another product or holder type is another
      rule with a code of its own.

    ``saving`` reads the products ``FOR SHARE`` (PostgreSQL): a unit or price-basis correction
    (``update_product``, which locks the row and then looks for rule versions naming it) waits for this
    transaction and then sees the new version, or this one waits for it and sees the new unit.
    ``saving=False`` (a simulated proposal, nothing stored) checks the names only, without a lock."""
    if saving and previous is not None and (previous.product_code, previous.holder_type) != (
        rule.product,
        rule.holder_type,
    ):
        raise RuleRefused(
            "rule_identity_changed",
            f"rule {rule.code!r} is a {previous.holder_type} rule on {previous.product_code!r}: a rule on "
            f"another product or holder type ({rule.holder_type} on {rule.product!r}) needs a new code "
            "(end this one with effective_to)",
        )
    product = get_product(session, rule.product, for_share=saving)
    if product is None:
        raise RuleRefused("unknown_product", f"rule {rule.code!r} names unknown product {rule.product!r}")
    if saving and not product.active and previous is None:
        raise RuleRefused(
            "product_inactive", f"product {rule.product!r} is withdrawn: a new rule cannot use it"
        )
    if rule.unused.policy == "points":
        code = rule.unused.points_product
        points = get_product(session, code, for_share=saving)
        if points is None:
            raise RuleRefused(
                "unknown_product", f"rule {rule.code!r} credits points in unknown product {code!r}"
            )
        if points.unit != "point":
            raise RuleRefused(
                "not_a_points_product",
                f"rule {rule.code!r} credits unused quantity as {code!r}, whose unit is {points.unit!r}: "
                "points_product must be a product counted in 'point'",
            )
        before = rule_from_body(previous.body).unused if previous is not None else None
        credited = before is not None and before.policy == "points" and before.points_product == code
        if saving and not points.active and not credited:
            raise RuleRefused(
                "product_inactive", f"points product {code!r} is withdrawn: a rule cannot start crediting it"
            )
    wanted = rule.eligibility.governorate_in
    if governorates is not None and wanted is not None:
        unknown = [g for g in wanted if g not in governorates]
        if unknown:
            raise RuleRefused(
                "unknown_governorate",
                {"rule": rule.code, "unknown": unknown, "allowed": list(governorates)},
            )


def versions(session: Session, code: str | None = None) -> list[RuleVersion]:
    stmt = select(RuleVersion).order_by(RuleVersion.code, RuleVersion.version)
    if code is not None:
        stmt = stmt.where(RuleVersion.code == code)
    return list(session.scalars(stmt))


def latest_versions(session: Session) -> list[RuleVersion]:
    """The newest version of every rule code, whatever its dates."""
    top = func.max(RuleVersion.version).label("v")
    newest = select(RuleVersion.code, top).group_by(RuleVersion.code).subquery()
    stmt = (
        select(RuleVersion)
        .join(newest, (RuleVersion.code == newest.c.code) & (RuleVersion.version == newest.c.v))
        .order_by(RuleVersion.code)
    )
    return list(session.scalars(stmt))


def in_force(session: Session, on: date) -> dict[str, RuleVersion]:
    """Per code, the version in force on ``on`` (see ``current``, whose rows these are); a code with
    none (not begun, ended, or on a withdrawn product) is left out."""
    top = func.max(RuleVersion.version).label("v")
    begun = select(RuleVersion.code, top).where(RuleVersion.effective_from <= on).group_by(RuleVersion.code)
    newest = begun.subquery()
    stmt = (
        select(RuleVersion)
        .join(newest, (RuleVersion.code == newest.c.code) & (RuleVersion.version == newest.c.v))
        .where((RuleVersion.effective_to.is_(None)) | (RuleVersion.effective_to >= on))
        .order_by(RuleVersion.code)
    )
    gone = set(session.scalars(select(Product.code).where(Product.active.is_(False))))
    return {row.code: row for row in session.scalars(stmt) if row.product_code not in gone}


def current(session: Session, on: date) -> list[tuple[int, Rule]]:
    """(rule_version_id, rule) in force on ``on``: per code, the newest version begun by that day, if
    its own ``effective_to`` covers the day (a code whose newest begun version has ended is not in
    force, whatever its older versions said).

    A rule of a withdrawn product (``active`` false) is not in force: no period of it opens, and
    simulate and explain leave it out; allowances already opened keep their version."""
    return [(row.id, rule_from_body(row.body)) for row in in_force(session, on).values()]


def by_ids(session: Session, ids: Sequence[int]) -> dict[int, Rule]:
    rows = session.scalars(select(RuleVersion).where(RuleVersion.id.in_(list(ids))))
    return {row.id: rule_from_body(row.body) for row in rows}


def install(
    session: Session, ruleset: RuleSet, actor: str, governorates: Sequence[str] | None = None
) -> tuple[int, int]:
    """Load a rule file (the demo, a ministry's set): missing products are added, and a rule whose
    body differs from its newest version gets a new version. Repeating it changes nothing.
    Returns (products added, rule versions added).

    Each rule is checked as the admin API checks it (``check_rule``; ``governorates``: the deployment's
    list, None leaves ``governorate_in`` unchecked): the first refused raises ``RuleRefused`` and the
    caller's transaction rolls back, so a file loads whole or not at all."""
    products = 0
    for spec in ruleset.products:
        if get_product(session, spec.code) is None:
            add_product(session, spec)
            products += 1
    newest = {v.code: v for v in latest_versions(session)}
    added = 0
    for rule in ruleset.rules:
        previous = newest.get(rule.code)
        if previous is None or previous.body != rule.model_dump(mode="json"):
            check_rule(session, rule, previous, governorates)
            add_version(session, rule, actor, previous.version + 1 if previous is not None else 1)
            added += 1
    return products, added


def install_demo(session: Session, actor: str = "demo") -> tuple[int, int]:
    """The demo rule set shipped in ``quota/rulesets/demo.yaml`` (RULES.md figures)."""
    return install(
        session, ruleset_from_yaml((Path(__file__).parent / "rulesets" / "demo.yaml").read_text()), actor
    )
