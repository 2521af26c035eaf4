"""Rolling allowances follow the rules once a day (issue 3): the worker's opening job refreshes them.

A car registered after the first opening gets its allowance at the next refresh; a new rule version
(another amount, another number of days) applies from a holder's next window while the running one
keeps what it was opened with; a car put on the exclusion list keeps its running window and is
``not_eligible`` once it ends (and gets an allowance again when taken off the list). Redemptions go
through the ledger service, on SQLite and on PostgreSQL (where the first opening stores grants: car 1
draws and so has a row, car 2 never draws and keeps its grant until a refresh changes it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.family.models import Exclusion
from card_backend.point.models import Point
from card_backend.vehicle.models import Vehicle
from quota import rules_repository
from quota.opening import open_due
from quota.redemption import Redemption
from quota.service import LedgerService
from tests.integration.rules_seed import allowance_rows, running_ledger, seed_world

DAY1 = datetime(2026, 11, 18, 9, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


@pytest.fixture
def ledger(engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[LedgerService]:
    with session_factory.begin() as s:
        seed_world(s, [("PUMP", "fuel_station", ["gasoline", "gas_cylinder"])],
                   [("vehicle", v) for v in (1, 2, 6)])
    with running_ledger(engine, DAY1) as service:
        yield service


def refresh(factory: sessionmaker[Session], at: datetime) -> None:
    with factory.begin() as s:
        assert open_due(s, at) is not None


def fill(ledger: LedgerService, vehicle: int, qty: int, at: datetime) -> tuple[str, int | None]:
    out = ledger.redeem(Redemption(str(uuid.uuid4()), f"V{vehicle:06d}", "gasoline", qty, "PUMP", at))
    return out.result, out.remaining_qty


def gasoline(factory: sessionmaker[Session], vehicle: int) -> list[dict[str, Any]]:
    with factory() as s:
        return allowance_rows(s, "vehicle", [vehicle], "gasoline")


def rolling_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT holder_type, holder_id, product_code, rule_version_id, period_start, base_qty, "
            "granted_qty, used_qty FROM allowances WHERE product_code IN ('gasoline', 'gas_cylinder') "
            "ORDER BY id"))]


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def test_a_car_registered_after_the_opening_gets_its_allowance_at_the_next_refresh(
    ledger: LedgerService, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    refresh(session_factory, DAY1)
    with session_factory.begin() as s:
        s.execute(insert(Vehicle), [{"id": 6, "plate": "P6", "governorate": "damascus", "kind": "private",
                                     "fuel": "gasoline", "engine_cc": 1300, "model_year": 2020,
                                     "owner_person_id": 1}])  # licence L1 is valid
    assert fill(ledger, 6, 10_000, DAY1 + timedelta(hours=2))[0] == "not_eligible"
    before = rolling_rows(engine)
    refresh(session_factory, DAY2)
    # the third car of family 1 is a "second car": 20 L at the free price
    assert fill(ledger, 6, 10_000, DAY2 + timedelta(hours=1)) == ("ok", 10_000)
    after = rolling_rows(engine)
    assert [r for r in after if r[:2] == ("vehicle", 6)] == [
        ("vehicle", 6, "gasoline", r[3], r[4], 20_000, 20_000, 10_000) for r in after if r[1] == 6
    ]
    assert [r for r in after if r[1] != 6] == [r for r in before if r[1] != 6]  # nobody else's changed


def test_a_refresh_that_changes_nothing_writes_nothing(
    ledger: LedgerService, session_factory: sessionmaker[Session], engine: Engine
) -> None:
    refresh(session_factory, DAY1)
    assert fill(ledger, 1, 10_000, DAY1 + timedelta(hours=1))[0] == "ok"
    before = rolling_rows(engine)
    refresh(session_factory, DAY2)
    refresh(session_factory, DAY2 + timedelta(days=1))
    assert rolling_rows(engine) == before


def new_private_version(factory: sessionmaker[Session]) -> None:
    """Private cars' gasoline from 19 November: 30 L (+ 20 L free) every 14 days."""
    with factory.begin() as s:
        private = {r.code: r for _, r in rules_repository.current(s, date(2026, 11, 19))}["gasoline_private"]
        rules_repository.add_version(s, private.model_copy(update={
            "amount": private.amount.model_copy(update={"base_qty": 30_000}),
            "period": private.period.model_copy(update={"days": 14}),
            "effective_from": date(2026, 11, 19)}), "test")


def test_a_renewal_keeps_the_station_the_card_is_tied_to(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    """RULES.md: a card is tied to its last station, changes limited per period. A new rule version's
    renewal must not untie it (every private car could then bind anew), and a change of station made
    while the renewal waits for the running window to end is the renewal's station too."""
    with session_factory.begin() as s:
        s.execute(insert(Point), [{"code": "PUMP2", "name_ar": "محطة ٢", "name_en": "Pump 2",
                                   "kind": "fuel_station", "governorate": "damascus",
                                   "products": ["gasoline"], "active": True}])
    refresh(session_factory, DAY1)
    started = DAY1 + timedelta(hours=1)
    assert fill(ledger, 1, 10_000, started)[0] == "ok"  # tied to PUMP
    new_private_version(session_factory)
    refresh(session_factory, DAY2)  # the renewal waits for the running window to end
    assert [r["home_point_code"] for r in gasoline(session_factory, 1)] == ["PUMP", "PUMP"]
    moved = ledger.rebind(str(uuid.uuid4()), "vehicle", 1, "gasoline", "PUMP2", "supervisor", DAY2)
    assert moved.result == "ok"
    nxt = started + timedelta(days=7, hours=1)
    assert fill(ledger, 1, 10_000, nxt)[0] == "point_not_bound"
    out = ledger.redeem(Redemption(str(uuid.uuid4()), "V000001", "gasoline", 10_000, "PUMP2",
                                   nxt + timedelta(minutes=2)))
    assert out.result == "ok" and out.remaining_qty == 40_000  # the new version's window, at PUMP2


def test_a_new_rule_version_applies_from_the_next_window_and_the_running_one_keeps_its_amount(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    refresh(session_factory, DAY1)
    started = DAY1 + timedelta(hours=1)
    assert fill(ledger, 1, 10_000, started) == ("ok", 30_000)  # 20 L subsidised + 20 L free
    new_private_version(session_factory)
    with session_factory.begin() as s:
        rules = {r.code: r for _, r in rules_repository.current(s, date(2026, 11, 19))}
        second = rules["gasoline_second_car"]
        rules_repository.add_version(s, second.model_copy(update={
            "amount": second.amount.model_copy(update={"base_qty": 25_000}), "fill_cap_qty": 25_000,
            "effective_from": date(2026, 11, 19)}), "test")
    refresh(session_factory, DAY2)
    refresh(session_factory, DAY2 + timedelta(days=1))  # a second refresh stacks nothing
    rows = gasoline(session_factory, 1)
    assert [(r["granted_qty"], r["used_qty"]) for r in rows] == [(40_000, 10_000), (50_000, 0)]
    assert utc(rows[1]["period_start"]) == started + timedelta(days=7)
    # the running window keeps the amount it was opened with
    assert fill(ledger, 1, 10_000, DAY2 + timedelta(days=2)) == ("ok", 20_000)
    # the next one is the new version's: 50 L, for 14 days
    nxt = started + timedelta(days=7, hours=1)
    assert fill(ledger, 1, 20_000, nxt) == ("ok", 30_000)
    assert fill(ledger, 1, 20_000, nxt + timedelta(days=10)) == ("ok", 10_000)
    line = next(q for q in ledger.quota_for_card("V000001", nxt + timedelta(days=10)) or []
                if q.product_code == "gasoline")
    assert line.period_end is not None and utc(line.period_end) == nxt + timedelta(days=14)
    # car 2 never drew (on PostgreSQL still a grant): its first window is already the new version's
    assert fill(ledger, 2, 25_000, DAY2 + timedelta(hours=1)) == ("ok", 0)


def test_an_excluded_car_keeps_its_running_window_then_is_not_eligible_until_taken_off_the_list(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    refresh(session_factory, DAY1)
    started = DAY1 + timedelta(hours=1)
    assert fill(ledger, 1, 10_000, started)[0] == "ok"
    with session_factory.begin() as s:
        s.execute(insert(Exclusion), [{"holder_type": "vehicle", "holder_id": v, "reason": "court",
                                       "since": date(2026, 11, 19)} for v in (1, 2)])
    refresh(session_factory, DAY2)
    assert fill(ledger, 1, 10_000, DAY2 + timedelta(hours=1)) == ("ok", 20_000)  # the running window
    assert fill(ledger, 2, 10_000, DAY2 + timedelta(hours=1))[0] == "not_eligible"  # none was running
    ended = started + timedelta(days=7, hours=1)
    assert fill(ledger, 1, 10_000, ended)[0] == "not_eligible"
    assert [q for q in ledger.quota_for_card("V000001", ended) or [] if q.product_code == "gasoline"] == []
    refresh(session_factory, ended)
    assert len(gasoline(session_factory, 1)) == 2  # the window it drew from, and the one granting nothing
    with session_factory.begin() as s:
        s.execute(delete(Exclusion).where(Exclusion.holder_type == "vehicle"))
    later = ended + timedelta(days=1)
    assert fill(ledger, 1, 10_000, later)[0] == "not_eligible"  # until the next refresh
    refresh(session_factory, later)
    assert fill(ledger, 1, 10_000, later + timedelta(hours=1)) == ("ok", 30_000)
    assert fill(ledger, 2, 10_000, later + timedelta(hours=1)) == ("ok", 10_000)
    assert len(gasoline(session_factory, 1)) == 2  # the zero row became the allowance again


def test_a_quota_line_of_an_ended_window_shows_no_past_end(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    refresh(session_factory, DAY1)
    assert fill(ledger, 1, 10_000, DAY1)[0] == "ok"
    later = DAY1 + timedelta(days=8)
    line = next(q for q in ledger.quota_for_card("V000001", later) or [] if q.product_code == "gasoline")
    assert (line.period_end, line.used_qty, line.remaining_qty) == (None, 0, 40_000)


def test_a_hold_voided_before_a_renewal_takes_over_leaves_one_window_not_two(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    """A pump hold opens the car's window; the refresh then places a renewal at that window's end; the
    hold is voided, which closes the window again (nothing was dispensed). The renewal takes over at
    once: the car's next fill opens one window, and a fill days later is in that same window, not in a
    second one the renewal would have opened inside it."""
    refresh(session_factory, DAY1)
    hold = str(uuid.uuid4())
    assert ledger.hold(hold, "V000001", "gasoline", 20_000, "PUMP", DAY1 + timedelta(hours=1)).ok
    new_private_version(session_factory)
    refresh(session_factory, DAY2)  # a renewal waits for the window the hold opened
    assert ledger.void(hold, DAY2 + timedelta(hours=1), point="PUMP").ok
    assert fill(ledger, 1, 20_000, DAY2 + timedelta(hours=2)) == ("ok", 30_000)  # the new version's 50 L
    assert fill(ledger, 1, 20_000, DAY1 + timedelta(days=8)) == ("ok", 10_000)  # the same 14-day window


def test_a_top_up_after_a_window_ended_survives_the_refresh(
    ledger: LedgerService, session_factory: sessionmaker[Session]
) -> None:
    refresh(session_factory, DAY1)
    started = DAY1 + timedelta(hours=1)
    assert fill(ledger, 1, 10_000, started)[0] == "ok"
    ended = started + timedelta(days=7, hours=1)
    topup = ledger.topup(str(uuid.uuid4()), "vehicle", 1, "gasoline", 5_000, "travel", "admin", now=ended)
    assert topup.ok
    new_private_version(session_factory)
    refresh(session_factory, ended + timedelta(hours=1))
    # the new version's 50 L and the 5 L travel top-up granted before it
    assert fill(ledger, 1, 10_000, ended + timedelta(hours=2)) == ("ok", 45_000)
