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


def get_product(session: Session, code: str, *, for_update: bool = False) -> Product | None:
    return session.get(Product, code, with_for_update=for_update)


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


def add_version(session: Session, rule: Rule, created_by: str) -> RuleVersion:
    """Store ``rule`` as the next version of its code (version 1 for a new code)."""
    latest = session.scalar(select(func.max(RuleVersion.version)).where(RuleVersion.code == rule.code))
    row = RuleVersion(
        code=rule.code,
        version=(latest or 0) + 1,
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


def current(session: Session, on: date) -> list[tuple[int, Rule]]:
    """(rule_version_id, rule) in force on ``on``: per code, the newest version begun by that day, if
    its own ``effective_to`` covers the day (a code whose newest begun version has ended is not in
    force, whatever its older versions said).

    A rule of a withdrawn product (``active`` false) is not in force: no period of it opens, and
    simulate and explain leave it out; allowances already opened keep their version."""
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
    rules = [(row.id, rule_from_body(row.body)) for row in session.scalars(stmt)]
    return [(vid, rule) for vid, rule in rules if rule.product not in gone]


def by_ids(session: Session, ids: Sequence[int]) -> dict[int, Rule]:
    rows = session.scalars(select(RuleVersion).where(RuleVersion.id.in_(list(ids))))
    return {row.id: rule_from_body(row.body) for row in rows}


def install(session: Session, ruleset: RuleSet, actor: str) -> tuple[int, int]:
    """Load a rule file (the demo, a ministry's set): missing products are added, and a rule whose
    body differs from its newest version gets a new version. Repeating it changes nothing.
    Returns (products added, rule versions added)."""
    products = 0
    for spec in ruleset.products:
        if get_product(session, spec.code) is None:
            add_product(session, spec)
            products += 1
    newest = {v.code: v.body for v in latest_versions(session)}
    added = 0
    for rule in ruleset.rules:
        if newest.get(rule.code) != rule.model_dump(mode="json"):
            add_version(session, rule, actor)
            added += 1
    return products, added


def install_demo(session: Session, actor: str = "demo") -> tuple[int, int]:
    """The demo rule set shipped in ``quota/rulesets/demo.yaml`` (RULES.md figures)."""
    return install(
        session, ruleset_from_yaml((Path(__file__).parent / "rulesets" / "demo.yaml").read_text()), actor
    )
