"""A small population for ledger tests: families, member and family cards, points, allowances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, insert

from card_backend.card.models import Card
from card_backend.family.models import Family, Person
from card_backend.point.models import Point
from quota import opening_repository
from quota.domain.terms import PeriodKind, PriceTier, Terms
from quota.models import Allowance, Product, RuleVersion

T0 = datetime(2026, 11, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=2)  # the ledger fixtures' clock (tests/integration/conftest.py)
SUGAR = Terms(rule_version_id=1, product_code="sugar", period_kind=PeriodKind.MONTH, price_per_qty=1000,
              tiers=(PriceTier("subsidised", 350), PriceTier("free", 2000, 1000)))
GAS = Terms(rule_version_id=2, product_code="gas", period_kind=PeriodKind.ROLLING, rolling_days=23,
            tiers=(PriceTier("subsidised", 11_500),))
DIESEL = Terms(rule_version_id=3, product_code="diesel", period_kind=PeriodKind.MONTH, price_per_qty=1000,
               tiers=(PriceTier("subsidised", 750),), fill_cap_qty=50_000, min_gap_s=86_400,
               binding_max_changes=1)
TERMS = (SUGAR, GAS, DIESEL)


@dataclass(frozen=True)
class Population:
    families: int
    family_card: dict[int, str]  # family id -> serial of the family card
    member_cards: dict[int, tuple[str, str]]  # family id -> two member card serials
    allowance_of: dict[tuple[int, str], int]  # (family id, product) -> allowance id


def seed(
    engine: Engine, families: int = 3, sugar_qty: int = 4000, diesel_qty: int = 200_000, grants: bool = False
) -> Population:
    """``families`` families with two members each, cards for all, two points, allowances for November.

    With ``grants`` (PostgreSQL) the allowances are stored as a period opening stores them — grants the
    ledger turns into rows when first touched — and ``allowance_of`` is empty.
    """
    with engine.begin() as conn:
        conn.execute(insert(Product), [
            {"code": "sugar", "name_ar": "سكر", "name_en": "Sugar", "unit": "g", "price_per_qty": 1000},
            {"code": "gas", "name_ar": "غاز", "name_en": "Gas cylinder", "unit": "piece", "price_per_qty": 1},
            {"code": "diesel", "name_ar": "مازوت", "name_en": "Diesel", "unit": "ml", "price_per_qty": 1000},
        ])
        conn.execute(insert(RuleVersion), [
            {"id": t.rule_version_id, "code": t.product_code, "version": 1, "product_code": t.product_code,
             "holder_type": "family", "body": {}, "effective_from": date(2026, 1, 1), "created_by": "test"}
            for t in TERMS
        ])
        conn.execute(insert(Point), [
            {"code": "P1", "name_ar": "مركز ١", "name_en": "Outlet 1", "kind": "state_outlet",
             "governorate": "damascus", "products": ["sugar", "gas", "diesel"], "active": True},
            {"code": "P2", "name_ar": "مركز ٢", "name_en": "Outlet 2", "kind": "state_outlet",
             "governorate": "aleppo", "products": ["sugar", "gas", "diesel"], "active": True},
            {"code": "BAKERY", "name_ar": "فرن", "name_en": "Bakery", "kind": "bakery",
             "governorate": "aleppo", "products": ["bread"], "active": True},
        ])
        fams, persons, cards, allowances = [], [], [], []
        family_card: dict[int, str] = {}
        member_cards: dict[int, tuple[str, str]] = {}
        allowance_of: dict[tuple[int, str], int] = {}
        next_allowance = 1
        for f in range(1, families + 1):
            fams.append({"id": f, "book_number": f"B{f:06d}", "governorate": "damascus",
                         "phone": f"+9639{f:08d}", "email": f"family{f}@example.org"})
            members = (2 * f - 1, 2 * f)
            for p in members:
                persons.append({"id": p, "national_id": f"{p:011d}", "family_id": f, "first_name_ar": "س",
                                "last_name_ar": "ع", "birth_date": date(1980, 1, 1), "sex": "F",
                                "relation": "head" if p % 2 else "spouse"})
                cards.append({"serial": f"M{p:06d}", "holder_type": "person", "holder_id": p,
                              "state": "active"})
            cards.append({"serial": f"F{f:06d}", "holder_type": "family", "holder_id": f, "state": "active"})
            family_card[f] = f"F{f:06d}"
            member_cards[f] = (f"M{members[0]:06d}", f"M{members[1]:06d}")
            for terms, qty, start, end in (
                (SUGAR, sugar_qty, T0, T0 + timedelta(days=30)),
                (GAS, 1, T0, None),
                (DIESEL, diesel_qty, T0, T0 + timedelta(days=30)),
            ):
                extra = 1000 if terms is SUGAR else 0
                allowances.append({"id": next_allowance, "holder_type": "family", "holder_id": f,
                                   "product_code": terms.product_code,
                                   "rule_version_id": terms.rule_version_id,
                                   "period_start": start, "period_end": end, "base_qty": qty,
                                   "granted_qty": qty + extra})
                allowance_of[(f, terms.product_code)] = next_allowance
                next_allowance += 1
        conn.execute(insert(Family), fams)
        conn.execute(insert(Person), persons)
        conn.execute(insert(Card), cards)
        if grants:
            _store_as_grants(conn, allowances)
            allowance_of = {}
        else:
            conn.execute(insert(Allowance), allowances)
    return Population(families, family_card, member_cards, allowance_of)


def _store_as_grants(conn: Connection, allowances: list[dict[str, Any]]) -> None:
    batches = []
    for terms in TERMS:
        mine = [a for a in allowances if a["product_code"] == terms.product_code]
        batches.append(opening_repository.Rows(
            "family", terms.product_code, terms.rule_version_id,
            mine[0]["period_start"], mine[0]["period_end"],
            np.array([a["holder_id"] for a in mine], dtype=np.int64),
            np.array([a["base_qty"] for a in mine], dtype=np.int64),
            np.array([a["granted_qty"] for a in mine], dtype=np.int64),
            np.zeros(len(mine), dtype=np.int64),
        ))
    stored = store_opened(conn, batches, T0)
    assert len(stored) == len(batches), "the seed fits grants"


def store_opened(
    conn: Connection, batches: list[opening_repository.Rows], at: datetime
) -> dict[int, tuple[int, int]]:
    """Store rows of periods nobody has opened, as an opening does (grants where they fit), and record
    each rule's opening (its code: the product's); returns the (run, slot) of each batch stored as grants."""
    stored = opening_repository.insert_new(conn, batches, at)
    for i, rows in enumerate(batches):
        run_id, slot = stored.get(i, (None, None))
        opening_repository.record_opening(
            conn, holder_type=rows.holder_type, product_code=rows.product_code, rule_code=rows.product_code,
            rule_version_id=rows.rule_version_id, period_start=rows.period_start, period_end=rows.period_end,
            rows=rows.n, carried_qty=0, points=0, opened_at=at, opened_by="test", run_id=run_id, slot=slot,
        )
    return stored
