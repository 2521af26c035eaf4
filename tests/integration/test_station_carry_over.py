"""A card stays tied to its last station from one period to the next (RULES.md: "a card is tied to its
last station; changes are limited (n per period)").

Before, each new week or month started a row with no station, so a car bound to one station could fill
at any other in the next period without using a change: the limit on changes counted for nothing. Now
a new period's row starts at the last station (on PostgreSQL when the grant is first touched, on
SQLite when the opening writes the row), the period's changes start again at none, and a card's first
station is also that of the rows waiting to take over (a period opened ahead, a rolling renewal). On
SQLite and on PostgreSQL, through the real opening and the ledger service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from quota import rules_repository
from quota.models import Allowance
from quota.opening import open_due
from quota.redemption import Redemption
from quota.service import LedgerService
from tests.integration.ledger_seed import DIESEL, T0
from tests.integration.ledger_seed import NOW as LEDGER_NOW
from tests.integration.rules_seed import allowance_rows, running_ledger, seed_world
from tests.integration.test_rolling_refresh import new_private_version

NOV = datetime(2026, 11, 18, 9, tzinfo=UTC)
DEC = datetime(2026, 12, 2, 9, tzinfo=UTC)
GOVERNMENT_CAR = 4


@pytest.fixture
def ledger(engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[LedgerService]:
    """The demo rules, two pumps, and government cars bound to one station (one change a month)."""
    with session_factory.begin() as s:
        seed_world(s, [(code, "fuel_station", ["gasoline"]) for code in ("PUMP", "PUMP2")],
                   [("vehicle", v) for v in (1, GOVERNMENT_CAR)])
        government = {r.code: r for _, r in rules_repository.current(s, date(2026, 11, 1))}[
            "gasoline_government"]
        rules_repository.add_version(s, government.model_copy(update={
            "binding_max_changes": 1, "effective_from": date(2026, 11, 1)}), "test")
    with running_ledger(engine, NOV) as service:
        yield service


def open_at(factory: sessionmaker[Session], at: datetime) -> None:
    with factory.begin() as s:
        assert open_due(s, at) is not None


def fill(ledger: LedgerService, vehicle: int, point: str, at: datetime) -> str:
    request = Redemption(str(uuid.uuid4()), f"V{vehicle:06d}", "gasoline", 20_000, point, at)
    return ledger.redeem(request).result


def homes(factory: sessionmaker[Session], vehicle: int) -> list[tuple[str | None, int]]:
    with factory() as s:
        return [(r["home_point_code"], r["binding_changes"])
                for r in allowance_rows(s, "vehicle", [vehicle], "gasoline")]


def test_a_new_month_keeps_the_station_and_gives_the_changes_back(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    open_at(session_factory, NOV)
    assert fill(ledger, GOVERNMENT_CAR, "PUMP", NOV + timedelta(hours=1)) == "ok"  # tied to PUMP
    open_at(session_factory, DEC)
    assert fill(ledger, GOVERNMENT_CAR, "PUMP2", DEC + timedelta(hours=1)) == "point_not_bound"
    assert fill(ledger, GOVERNMENT_CAR, "PUMP", DEC + timedelta(hours=2)) == "ok"
    assert homes(session_factory, GOVERNMENT_CAR) == [("PUMP", 0), ("PUMP", 0)]
    # December's one change is there to use
    moved = ledger.rebind(str(uuid.uuid4()), "vehicle", GOVERNMENT_CAR, "gasoline", "PUMP2", "supervisor",
                          DEC + timedelta(days=1))
    assert moved.ok
    assert fill(ledger, GOVERNMENT_CAR, "PUMP2", DEC + timedelta(days=2)) == "ok"
    assert fill(ledger, GOVERNMENT_CAR, "PUMP", DEC + timedelta(days=3)) == "point_not_bound"


def test_a_month_opened_ahead_takes_the_station_the_card_is_first_tied_to(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    open_at(session_factory, NOV)
    open_at(session_factory, DEC)  # December opened ahead (an administrator's ``cardctl period open``)
    assert fill(ledger, GOVERNMENT_CAR, "PUMP", NOV + timedelta(hours=1)) == "ok"  # the first station
    assert fill(ledger, GOVERNMENT_CAR, "PUMP2", DEC + timedelta(hours=1)) == "point_not_bound"
    assert fill(ledger, GOVERNMENT_CAR, "PUMP", DEC + timedelta(hours=2)) == "ok"


def test_a_rolling_renewal_takes_the_station_a_posted_pump_hold_first_tied_the_car_to(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    """A pump hold opens a private car's window but ties it to a station only when it posts (a voided
    hold must not bind). If a new rule version's renewal is placed in between, the renewal must take
    the station the post tied the car to, or the car's next window binds anew."""
    late = datetime(2026, 11, 18, 23, 50, tzinfo=UTC)
    open_at(session_factory, late)
    hold = str(uuid.uuid4())
    assert ledger.hold(hold, "V000001", "gasoline", 20_000, "PUMP", late + timedelta(minutes=5)).ok
    new_private_version(session_factory)  # from 19 November
    open_at(session_factory, late + timedelta(minutes=11))  # the renewal waits, with no station yet
    assert homes(session_factory, 1) == [(None, 0), (None, 0)]
    assert ledger.post(hold, 15_000, late + timedelta(minutes=12), point="PUMP").ok
    assert homes(session_factory, 1) == [("PUMP", 0), ("PUMP", 0)]
    nxt = late + timedelta(days=7, hours=1)  # the renewal's window
    assert fill(ledger, 1, "PUMP2", nxt) == "point_not_bound"
    assert fill(ledger, 1, "PUMP", nxt + timedelta(minutes=1)) == "ok"


def test_a_first_fill_through_the_group_commit_ties_the_waiting_period_too(world) -> None:  # type: ignore[no-untyped-def]
    """The redemption engine's form of the same rule: December's diesel row, written ahead with no
    station, takes the station November's first fill ties the family to, in the fill's own group."""
    svc, pop, db = world
    with db.begin() as conn:
        conn.execute(insert(Allowance), [{"id": 10_000, "holder_type": "family", "holder_id": 1,
                                          "product_code": "diesel",
                                          "rule_version_id": DIESEL.rule_version_id,
                                          "period_start": T0 + timedelta(days=30),
                                          "period_end": T0 + timedelta(days=61), "base_qty": 200_000,
                                          "granted_qty": 200_000}])
    card = pop.family_card[1]
    assert svc.redeem(Redemption(str(uuid.uuid4()), card, "diesel", 10_000, "P1", LEDGER_NOW)).ok
    with db.connect() as conn:
        stations = conn.execute(select(Allowance.home_point_code).where(
            Allowance.holder_id == 1, Allowance.product_code == "diesel").order_by(Allowance.period_start))
        assert list(stations.scalars()) == ["P1", "P1"]
    december = T0 + timedelta(days=31)
    assert svc.redeem(Redemption(str(uuid.uuid4()), card, "diesel", 10_000, "P2", december)).result == \
        "point_not_bound"
