"""Lost and replaced cards, binding changes per period, and terms read from a stored rule version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, text

from quota.domain.rules import rules_from_yaml
from quota.domain.terms import PeriodKind
from quota.engine import GroupCommitEngine
from quota.models import RuleVersion
from quota.redemption import Redemption, RuleTerms, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, Population, seed

NOW = T0 + timedelta(days=2)


def rid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[LedgerService, Population, Engine]]:
    pop = seed(engine)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        yield LedgerService(engine, terms, eng, clock=lambda: NOW), pop, engine


def test_lost_card_is_refused_while_its_replacement_draws_the_same_allowance(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    old = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), old, "sugar", 1000, "P1")).remaining_qty == 4000
    with db.begin() as conn:
        conn.execute(text("UPDATE cards SET state = 'lost' WHERE serial = :s"), {"s": old})
        conn.execute(text("INSERT INTO cards (serial, holder_type, holder_id, state, state_reason, "
                          "last_counter) VALUES ('F999999', 'family', 1, 'active', '', 0)"))
    assert svc.redeem(Redemption(rid(), old, "sugar", 1000, "P1")).result == "card_blocked"
    assert svc.redeem(Redemption(rid(), "F999999", "sugar", 1000, "P1")).remaining_qty == 3000


def test_binding_changes_are_counted_per_period(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, _ = world
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1")).ok  # binds to P1
    assert svc.rebind(rid(), "family", 1, "diesel", "P2", "user:reg").ok
    later = NOW + timedelta(days=1)
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1", later)).result == "point_not_bound"
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P2", later)).ok
    refused = svc.rebind(rid(), "family", 1, "diesel", "P1", "user:reg")
    assert refused.result == "binding_changes_exhausted"


def test_terms_come_from_the_stored_rule_version(engine: Engine) -> None:
    demo = Path(__file__).resolve().parents[2] / "quota" / "rulesets" / "demo.yaml"
    rule = next(r for r in rules_from_yaml(demo.read_text()) if r.code == "gasoline_private")
    with engine.begin() as conn:
        conn.execute(insert(RuleVersion), [{"id": 41, "code": rule.code, "version": 1,
                                            "product_code": rule.product, "holder_type": rule.holder_type,
                                            "body": rule.model_dump(mode="json"),
                                            "effective_from": date(2026, 1, 1), "created_by": "test"}])
        terms = RuleTerms()(conn, 41)
    assert terms.rule_version_id == 41 and terms.period_kind is PeriodKind.ROLLING
    assert terms.rolling_days == 7 and terms.tiers[0].name
