"""The worker's openings decide rule priority among every rule in force, not only those falling due.

Two defects a ministry would pay for or a family would be refused by, both through the worker's own
``open_due`` and the ledger service, on SQLite and on PostgreSQL:

- a family a higher-priority weekly sugar rule serves was also given the monthly sugar on the 1st (the
  weekly rule was not due that day, so it shadowed nothing): two allowances of one product;
- a rolling rule replaced by a monthly one (gas every 23 days → one a month): the daily refresh of the
  ended rolling product gave every family that had drawn a renewal granting nothing, starting when its
  window ended, and that row hid the month's allowance: the family was refused its December cylinder.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session, sessionmaker

from card_backend.card.models import Card
from card_backend.licence.models import Licence
from card_backend.point.models import Point
from card_backend.vehicle.models import Vehicle
from quota import rules_repository
from quota.domain.rules import Rule
from quota.opening import open_due
from quota.redemption import Outcome, Redemption
from quota.service import LedgerService
from tests.integration.rules_seed import allowance_rows, running_ledger, seed_world

LARGE_FAMILY = 4  # eight living members (rules_seed)


@pytest.fixture
def ledger(engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[LedgerService]:
    with session_factory.begin() as s:
        seed_world(s, [("OUTLET", "state_outlet", ["sugar", "gas_cylinder"])],
                   [("family", f) for f in (1, 2, 3, LARGE_FAMILY)])
    with running_ledger(engine, datetime(2026, 11, 1, tzinfo=UTC)) as service:
        yield service


def worker(factory: sessionmaker[Session], at: datetime) -> None:
    with factory.begin() as s:
        open_due(s, at)


def draw(ledger: LedgerService, family: int, product: str, qty: int, at: datetime) -> Outcome:
    return ledger.redeem(Redemption(str(uuid.uuid4()), f"F{family:06d}", product, qty, "OUTLET", at))


def test_a_higher_priority_weekly_rule_shadows_the_monthly_one_that_falls_due(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    weekly = Rule.model_validate({
        "code": "sugar_large_family_weekly", "product": "sugar", "holder_type": "family", "priority": 10,
        "eligibility": {"family_size": {"min": 7}}, "amount": {"base_qty": 1000},
        "period": {"kind": "week"}, "tiers": [{"name": "subsidised", "price_minor": 350}],
        "effective_from": "2021-01-01"})
    with session_factory.begin() as s:
        rules_repository.add_version(s, weekly, "test")
    worker(session_factory, datetime(2026, 11, 30, 0, 10, tzinfo=UTC))  # Monday: the week (and November)
    tuesday = datetime(2026, 12, 1, 0, 10, tzinfo=UTC)  # 1 December: the month falls due, the week not
    worker(session_factory, tuesday)
    with session_factory() as s:
        december = [r for r in allowance_rows(s, "family", [LARGE_FAMILY], "sugar")
                    if r["period_start"].date() >= date(2026, 12, 1)]
    assert december == []  # the large family draws weekly only
    noon = tuesday + timedelta(hours=12)
    assert draw(ledger, LARGE_FAMILY, "sugar", 1000, noon).result == "ok"  # this week's 1000 g
    assert draw(ledger, LARGE_FAMILY, "sugar", 1000, noon).result == "exceeds_allowance"
    assert draw(ledger, 1, "sugar", 2000, noon).result == "ok"  # a small family's monthly sugar opened


def test_a_rolling_rule_replaced_by_a_monthly_one_leaves_the_month_drawable(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    november = datetime(2026, 11, 18, 9, tzinfo=UTC)
    worker(session_factory, november)
    assert draw(ledger, 1, "gas_cylinder", 1, november).ok  # a 23-day window, to 11 December
    with session_factory.begin() as s:
        gas = {r.code: r for _, r in rules_repository.current(s, november.date())}["gas_cylinder_family"]
        rules_repository.add_version(s, gas.model_copy(update={
            "period": gas.period.model_copy(update={"kind": "month", "days": None}),
            "effective_from": date(2026, 12, 1)}), "test")
    worker(session_factory, datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    after = datetime(2026, 12, 12, 10, tzinfo=UTC)  # the old window has ended
    taken = draw(ledger, 1, "gas_cylinder", 1, after)
    assert (taken.result, taken.remaining_qty) == ("ok", 0)
    for day in range(2, 21):  # the worker's later daily rounds change nothing of it
        worker(session_factory, datetime(2026, 12, day, 0, 5, tzinfo=UTC))
    later = datetime(2026, 12, 20, 10, tzinfo=UTC)
    assert draw(ledger, 1, "gas_cylinder", 1, later).result == "exceeds_allowance"  # one a month
    taken = draw(ledger, 2, "gas_cylinder", 1, later)  # a family that never drew under the old rule
    assert (taken.result, taken.remaining_qty) == ("ok", 0)


def test_a_familys_motorcycle_does_not_make_its_only_car_a_second_car(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    """The demo's "a family's second and later cars pay the free price only" counts cars: a family
    whose motorcycle was registered first still fills its one private car at the subsidised price."""
    with session_factory.begin() as s:
        s.execute(insert(Licence), [{"id": 3, "person_id": 8, "number": "L3", "categories": "A,B",
                                     "issued_on": date(2015, 1, 1), "expires_on": date(2030, 1, 1)}])
        s.execute(insert(Vehicle), [
            {"id": 10 + n, "plate": f"M{n}", "governorate": "homs", "kind": kind, "fuel": "gasoline",
             "engine_cc": cc, "model_year": 2018, "owner_person_id": 8}
            for n, (kind, cc) in enumerate((("motorcycle", 150), ("private", 1300), ("private", 1400)))])
        s.execute(insert(Card), [{"serial": f"V{v:06d}", "holder_type": "vehicle", "holder_id": v,
                                  "state": "active"} for v in (11, 12)])
        s.execute(update(Point).where(Point.code == "OUTLET").values(products=["sugar", "gasoline"]))
    at = datetime(2026, 11, 18, 9, tzinfo=UTC)
    worker(session_factory, at)
    first = ledger.redeem(Redemption(str(uuid.uuid4()), "V000011", "gasoline", 10_000, "OUTLET", at))
    assert (first.result, first.price_minor) == ("ok", 7_500)  # 10 L at 750 a litre: subsidised
    second = ledger.redeem(Redemption(str(uuid.uuid4()), "V000012", "gasoline", 10_000, "OUTLET", at))
    assert (second.result, second.price_minor) == ("ok", 20_000)  # the family's second car: free price


def test_points_from_unused_bread_are_spent_without_paying_cash(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    """Unused bread becomes points (RULES.md, Egypt) credited to the month's points allowance. It is
    governed by the demo's own points rule, whose tier costs nothing in cash, also on the days that
    rule is not due; before, the points carried bread's version and a clerk charged 200 a point."""
    with session_factory.begin() as s:
        s.execute(update(Point).where(Point.code == "OUTLET").values(products=["points", "bread"]))
    first = datetime(2026, 11, 18, 0, 5, tzinfo=UTC)
    worker(session_factory, first)  # November and the 18th's bread; family 1 draws none of it
    worker(session_factory, first + timedelta(days=1))  # the 19th: the 18th's bundle becomes 10 points
    spent = draw(ledger, 1, "points", 5, first + timedelta(days=1, hours=9))
    assert (spent.result, spent.quantity_qty, spent.remaining_qty, spent.price_minor) == ("ok", 5, 5, 0)
