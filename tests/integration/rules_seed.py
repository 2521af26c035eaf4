"""A small registry population and the demo rule set, written with SQLAlchemy Core (test helper).

Families (governorate, members' birth dates, excluded?) and vehicles (kind, cc, owner's licence)
chosen so every rule of the demo set has holders on both sides of its predicates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from card_backend.card.models import Card
from card_backend.family.models import Exclusion, Family, Person
from card_backend.licence.models import Licence, LicenceState
from card_backend.point.models import Point
from card_backend.vehicle.models import Vehicle
from quota import ledger_repository, rules_repository
from quota.domain.rules import RuleSet, ruleset_from_yaml
from quota.redemption import RuleTerms
from quota.service import LedgerService

DEMO = Path(__file__).resolve().parents[2] / "quota" / "rulesets" / "demo.yaml"

# family id → (governorate, birth years of living members)
FAMILIES: dict[int, tuple[str, list[int]]] = {
    1: ("damascus", [1980, 1982]),
    2: ("damascus", [1970, 1972, 2005, 2010, 2015]),
    3: ("homs", [1990, 1991, 2020]),
    4: ("homs", [1960, 1962, 1990, 1992, 2000, 2002, 2004, 2010]),
    5: ("aleppo", [1985]),  # excluded
}
EXCLUDED_FAMILY = 5


def seed_registry(session: Session) -> None:
    pid = 0
    for fid, (gov, years) in FAMILIES.items():
        session.execute(insert(Family), [{"id": fid, "book_number": f"B{fid}", "governorate": gov}])
        for y in years:
            pid += 1
            session.execute(
                insert(Person),
                [
                    {
                        "id": pid,
                        "national_id": f"{pid:011d}",
                        "family_id": fid,
                        "first_name_ar": "أ",
                        "last_name_ar": "ب",
                        "birth_date": date(y, 6, 1),
                        "sex": "M",
                        "relation": "other",
                    }
                ],
            )
    # a dead member does not count
    session.execute(
        insert(Person),
        [
            {
                "id": 99,
                "national_id": "00000000099",
                "family_id": 1,
                "first_name_ar": "أ",
                "last_name_ar": "ب",
                "birth_date": date(1950, 1, 1),
                "sex": "F",
                "relation": "parent",
                "alive": False,
            }
        ],
    )
    session.execute(
        insert(Exclusion),
        [
            {
                "holder_type": "family",
                "holder_id": EXCLUDED_FAMILY,
                "reason": "commercial_register",
                "since": date(2022, 1, 1),
            }
        ],
    )
    # persons 1 (family 1) and 3 (family 2) hold licences; person 3's is suspended since 2026-01-01
    session.execute(
        insert(Licence),
        [
            {
                "id": 1,
                "person_id": 1,
                "number": "L1",
                "categories": "B",
                "issued_on": date(2015, 1, 1),
                "expires_on": date(2030, 1, 1),
            },
            {
                "id": 2,
                "person_id": 3,
                "number": "L2",
                "categories": "B",
                "issued_on": date(2015, 1, 1),
                "expires_on": date(2030, 1, 1),
            },
        ],
    )
    session.execute(
        insert(LicenceState),
        [
            {"licence_id": 2, "state": "suspended", "reason": "court", "effective_on": date(2026, 1, 1)},
        ],
    )
    vehicles = [
        (1, "private", "gasoline", 1600, 1),  # family 1, first car: subsidised
        (2, "private", "gasoline", 1400, 1),  # family 1, second car: free price only
        (3, "private", "gasoline", 2400, 3),  # family 2, owner's licence suspended: nothing
        (4, "government", "gasoline", 3000, 3),  # government: no licence rule
        (5, "private", "diesel", 1800, 1),
    ]
    session.execute(
        insert(Vehicle),
        [
            {
                "id": v,
                "plate": f"P{v}",
                "governorate": "damascus",
                "kind": k,
                "fuel": f,
                "engine_cc": cc,
                "model_year": 2015,
                "owner_person_id": owner,
            }
            for v, k, f, cc, owner in vehicles
        ],
    )


def demo_ruleset() -> RuleSet:
    return ruleset_from_yaml(DEMO.read_text())


def seed_rules(session: Session) -> RuleSet:
    rs = demo_ruleset()
    for p in rs.products:
        rules_repository.add_product(session, p)
    for r in rs.rules:
        rules_repository.add_version(session, r, "test")
    return rs


def touch(session: Session, holder_type: str, holder_ids: list[int], product: str, at: datetime) -> None:
    """Let the ledger touch these allowances at ``at``, as a redemption would: an opened grant becomes
    an ``allowances`` row (on PostgreSQL opening stores grants; SQLite rows already exist)."""
    ledger_repository.lock_current_allowances(
        session.connection(), [(holder_type, h, product) for h in holder_ids], at
    )


def allowance_rows(
    session: Session, holder_type: str, holder_ids: list[int], product: str
) -> list[dict[str, Any]]:
    """Every allowance of these holders for the product, by holder then period start, as the ledger
    reads them (rows and grants not yet touched alike)."""
    return [
        state._asdict()
        for h in holder_ids
        for state in ledger_repository.allowances_of_holder(session.connection(), holder_type, h)
        if state.product_code == product
    ]


def seed_world(
    session: Session, points: Sequence[tuple[str, str, Sequence[str]]], cards: Iterable[tuple[str, int]]
) -> None:
    """The registry and the demo rules, with points (code, kind, products served) in Damascus and an
    active card per (holder type, id), serial ``F000001`` / ``V000001`` as the holder's initial."""
    seed_registry(session)
    seed_rules(session)
    session.execute(insert(Point), [
        {"code": code, "name_ar": "نقطة", "name_en": code, "kind": kind, "governorate": "damascus",
         "products": list(products), "active": True} for code, kind, products in points])
    session.execute(insert(Card), [
        {"serial": f"{t[0].upper()}{h:06d}", "holder_type": t, "holder_id": h, "state": "active"}
        for t, h in cards])


@contextmanager
def running_ledger(engine: Engine, now: datetime) -> Iterator[LedgerService]:
    """A ledger service reading stored rule versions, its clock at ``now``; its engine stopped after."""
    service = LedgerService(engine, RuleTerms(), clock=lambda: now)
    try:
        yield service
    finally:
        if service.engine is not None:
            service.engine.stop()
