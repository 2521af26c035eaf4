"""Untouched grants beside other periods' rows (PostgreSQL, where an opening stores grants).

* A month opened ahead (``POST /api/v1/periods/open {"period_key": "2026-12"}`` while November runs)
  writes December's government cars as rows — they are few and their ids scattered, so they do not
  fit a run of grants — while November's allowances are still the untouched grants of a dense run.
  A car that has not drawn in November yet must still be served November's grant: its first touch
  materialises it (``grant_repository.MATERIALISE`` looks for a row of the grant's own period only,
  not for December's). Before, December's row hid November's grant from the ledger while the quota
  view still showed it: every redemption, hold, top-up and station change was ``not_eligible``.
* A card tied to a station in October is still tied to it in November (``home_before``): the quota
  view and explain show that station for November's untouched grant, as the ledger enforces it when
  the grant is first touched. Before, they showed no station, and the fill at another one was refused
  ``point_not_bound``.
* The bound does not let a rolling grant be made a row twice: its row's start moves with its windows.

Through the HTTP API (the ledger's clock is the test's), on PostgreSQL only: SQLite has no grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from card_backend.card.models import Card
from card_backend.vehicle.models import Vehicle
from quota import rules_repository
from quota.opening import open_due
from quota.redemption import RuleTerms
from quota.service import LedgerService
from tests.integration.rules_seed import allowance_rows, seed_world

pytestmark = pytest.mark.postgres

NOV18 = datetime(2026, 11, 18, 9, tzinfo=UTC)
OCT20 = datetime(2026, 10, 20, 9, tzinfo=UTC)
NOV2 = datetime(2026, 11, 2, 9, tzinfo=UTC)
GOVERNMENT_CAR = 4  # of the seeded registry
SCATTERED = (1600, 1700)  # government cars far from the others: December's rows cannot be grants
TZ = ZoneInfo("Asia/Damascus")  # the deployment's default (CARD_TIMEZONE)
NOVEMBER, DECEMBER = 800_000, 600_000  # a government car's month (the demo's 800 L; 600 L from December)
NOV1 = datetime(2026, 10, 31, 21, tzinfo=UTC)  # 1 November, Damascus
DEC1 = datetime(2026, 11, 30, 21, tzinfo=UTC)


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """PostgreSQL only (overrides the SQLite/PostgreSQL parameter for the app fixtures)."""
    return pg_engine


@dataclass
class World:
    engine: Engine
    factory: sessionmaker[Session]
    client: TestClient
    auth: Callable[..., dict[str, str]]
    clock: list[datetime]
    headers: dict[Role, dict[str, str]] = field(default_factory=dict)

    def as_(self, role: Role) -> dict[str, str]:
        if role not in self.headers:
            self.headers[role] = self.auth(role)
        return self.headers[role]

    def open(self) -> None:
        with self.factory.begin() as s:
            assert open_due(s, self.clock[0], tz=TZ) is not None

    def gasoline(self, vehicle: int) -> dict[str, Any]:
        r = self.client.get(f"/api/v1/cards/V{vehicle:06d}/quota", headers=self.as_(Role.CLERK))
        assert r.status_code == 200, r.text
        (line,) = [line for line in r.json()["lines"] if line["product_code"] == "gasoline"]
        return line  # type: ignore[no-any-return]

    def redeem(self, vehicle: int, qty: int, point: str = "P") -> str:
        r = self.client.post("/api/v1/redemptions", headers=self.as_(Role.CLERK), json={
            "id": str(uuid.uuid4()), "card_serial": f"V{vehicle:06d}", "product_code": "gasoline",
            "quantity_qty": qty, "point_code": point})
        return _result(r.status_code, r.json())

    def hold(self, vehicle: int, qty: int, point: str = "P") -> tuple[str, str]:
        hold_id = str(uuid.uuid4())
        r = self.client.post("/api/v1/holds", headers=self.as_(Role.CLERK), json={
            "id": hold_id, "card_serial": f"V{vehicle:06d}", "product_code": "gasoline",
            "quantity_qty": qty, "point_code": point})
        return hold_id, _result(r.status_code, r.json())

    def post(self, hold_id: str, qty: int) -> str:
        r = self.client.post(f"/api/v1/holds/{hold_id}/post", headers=self.as_(Role.CLERK),
                             json={"quantity_qty": qty})
        return _result(r.status_code, r.json())

    def topup(self, vehicle: int, qty: int) -> str:
        r = self.client.post("/api/v1/topups", headers=self.as_(Role.REGISTRAR), json={
            "id": str(uuid.uuid4()), "holder_type": "vehicle", "holder_id": vehicle,
            "product_code": "gasoline", "quantity_qty": qty, "reason": "official mission"})
        return _result(r.status_code, r.json())

    def rebind(self, vehicle: int, point: str) -> str:
        r = self.client.post("/api/v1/bindings", headers=self.as_(Role.REGISTRAR), json={
            "id": str(uuid.uuid4()), "holder_type": "vehicle", "holder_id": vehicle,
            "product_code": "gasoline", "point_code": point})
        return _result(r.status_code, r.json())

    def rows(self, vehicle: int) -> list[tuple[Any, ...]]:
        """The car's gasoline ``allowances`` rows (not its untouched grants): start, used, held, top-up."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(
                "SELECT period_start, used_qty, held_qty, topup_qty, home_point_code FROM allowances "
                "WHERE holder_type = 'vehicle' AND holder_id = :v AND product_code = 'gasoline' "
                "ORDER BY period_start"), {"v": vehicle})]


def _result(status: int, body: dict[str, Any]) -> str:
    if status == 409:
        return str(body["error"])
    assert status == 200, body
    return str(body["result"])


def _government_versions(s: Session, **changes: Any) -> None:
    """New versions of the demo's government rule: from October tied to a station (one change a
    month, RULES.md) and changed by ``changes``; from December (opened ahead) with 600 L a month, so a
    draw of more than that can only be November's grant."""
    government = {r.code: r for _, r in rules_repository.current(s, date(2026, 10, 1))}["gasoline_government"]
    october = government.model_copy(update={"binding_max_changes": 1, "effective_from": date(2026, 10, 1),
                                            **changes})
    rules_repository.add_version(s, october, "test")
    december = october.model_copy(update={"amount": october.amount.model_copy(update={"base_qty": DECEMBER}),
                                          "effective_from": date(2026, 12, 1)})
    rules_repository.add_version(s, december, "test")


@contextmanager
def _world(
    engine: Engine,
    session_factory: sessionmaker[Session],
    app: Any,
    client: TestClient,
    auth: Callable[..., dict[str, str]],
    now: datetime,
    extra: Callable[[Session], None],
) -> Iterator[World]:
    with session_factory.begin() as s:
        seed_world(s, [(code, "fuel_station", ["gasoline"]) for code in ("P", "Q")],
                   [("vehicle", v) for v in (1, 2, GOVERNMENT_CAR)])
        extra(s)
    clock = [now]
    ledger = LedgerService(engine, RuleTerms(), clock=lambda: clock[0])
    app.state.ledger = ledger
    try:
        yield World(engine, session_factory, client, auth, clock)
    finally:
        if ledger.engine is not None:
            ledger.engine.stop()


def _fleet(s: Session) -> None:
    """Many private cars (rolling gasoline: November's run is dense, so grants) and two government
    cars far from them (December's run holds only government cars: scattered, so rows). The
    government rule without its fill cap and gap, so a car may draw all its quota shows at once."""
    _government_versions(s, fill_cap_qty=None, min_gap_s=None)
    s.execute(insert(Vehicle), [
        {"id": v, "plate": f"P{v}", "governorate": "damascus", "kind": "private", "fuel": "gasoline",
         "engine_cc": 1400, "model_year": 2015, "owner_person_id": 1} for v in range(10, 1500)])
    s.execute(insert(Vehicle), [
        {"id": v, "plate": f"G{v}", "governorate": "damascus", "kind": "government", "fuel": "gasoline",
         "engine_cc": 3000, "model_year": 2015, "owner_person_id": 3} for v in SCATTERED])
    s.execute(insert(Card), [{"serial": f"V{v:06d}", "holder_type": "vehicle", "holder_id": v,
                              "state": "active"} for v in SCATTERED])


@pytest.fixture
def ahead(engine: Engine, session_factory: sessionmaker[Session], app: Any, client: TestClient,
          auth: Callable[..., dict[str, str]]) -> Iterator[World]:
    """November opened (grants) on the 18th, then December opened ahead by an administrator (rows)."""
    with _world(engine, session_factory, app, client, auth, NOV18, _fleet) as world:
        world.open()
        r = client.post("/api/v1/periods/open", headers=world.as_(Role.ADMIN), json={"period_key": "2026-12"})
        assert r.status_code == 200, r.text
        with engine.connect() as conn:  # the situation this file is about
            december = conn.execute(text(
                "SELECT holder_id, period_start, granted_qty FROM allowances WHERE product_code = 'gasoline' "
                "AND holder_type = 'vehicle' ORDER BY holder_id")).all()
            runs = conn.scalar(text("SELECT count(*) FROM period_openings WHERE holder_type = 'vehicle' "
                                    "AND rule_code = 'gasoline_government' AND run_id IS NOT NULL"))
        assert december == [(v, DEC1, DECEMBER) for v in (GOVERNMENT_CAR, *SCATTERED)]  # December: rows
        assert runs == 1  # November: a run of grants
        yield world


def test_a_month_opened_ahead_leaves_this_months_grant_redeemable(ahead: World) -> None:
    line = ahead.gasoline(GOVERNMENT_CAR)
    assert line["period_end"] == "2026-11-30T21:00:00Z"  # November's (the view was right before the fix)
    available = line["available_now_qty"]
    assert available == NOVEMBER
    assert ahead.redeem(GOVERNMENT_CAR, available + 1) == "exceeds_allowance"
    assert ahead.redeem(GOVERNMENT_CAR, available) == "ok"
    after = ahead.gasoline(GOVERNMENT_CAR)
    assert (after["used_qty"], after["remaining_qty"], after["available_now_qty"]) == (NOVEMBER, 0, 0)
    assert ahead.redeem(GOVERNMENT_CAR, 1) == "exceeds_allowance"
    # November's row was made from the grant; December's, written ahead, is untouched but tied to the
    # station November's first fill tied the car to
    assert ahead.rows(GOVERNMENT_CAR) == [(NOV1, NOVEMBER, 0, 0, "P"), (DEC1, 0, 0, 0, "P")]


def test_a_month_opened_ahead_leaves_this_months_grant_holdable(ahead: World) -> None:
    car = SCATTERED[0]
    available = ahead.gasoline(car)["available_now_qty"]
    assert available == NOVEMBER
    assert ahead.hold(car, available + 1)[1] == "exceeds_allowance"
    hold_id, result = ahead.hold(car, available)
    assert result == "ok"
    line = ahead.gasoline(car)
    assert (line["held_qty"], line["available_now_qty"]) == (available, 0)
    assert ahead.post(hold_id, available - 1_000) == "ok"
    line = ahead.gasoline(car)
    assert (line["used_qty"], line["held_qty"], line["available_now_qty"]) == (available - 1_000, 0, 1_000)
    assert ahead.rows(car) == [(NOV1, available - 1_000, 0, 0, "P"), (DEC1, 0, 0, 0, "P")]


def test_a_month_opened_ahead_leaves_this_months_grant_to_top_up_and_rebind(ahead: World) -> None:
    car = SCATTERED[1]
    assert ahead.gasoline(car)["granted_qty"] == NOVEMBER
    # CARD_TOPUP_MAX_PERCENT (100): at most November's base quantity at once
    assert ahead.topup(car, NOVEMBER + 1) == "exceeds_allowance"
    assert ahead.topup(car, 40_000) == "ok"
    line = ahead.gasoline(car)
    assert (line["granted_qty"], line["available_now_qty"]) == (NOVEMBER + 40_000, NOVEMBER + 40_000)
    assert ahead.rebind(car, "Q") == "ok"  # its station for November (and for December's row)
    assert ahead.gasoline(car)["home_point_code"] == "Q"
    assert ahead.redeem(car, 1_000, point="P") == "point_not_bound"
    assert ahead.redeem(car, NOVEMBER + 40_000 + 1, point="Q") == "exceeds_allowance"
    assert ahead.redeem(car, NOVEMBER + 40_000, point="Q") == "ok"
    assert ahead.rows(car) == [(NOV1, NOVEMBER + 40_000, 0, 40_000, "Q"), (DEC1, 0, 0, 0, "Q")]


@pytest.fixture
def tied(engine: Engine, session_factory: sessionmaker[Session], app: Any, client: TestClient,
         auth: Callable[..., dict[str, str]]) -> Iterator[World]:
    """The government car fills at P in October (which ties it to P); November is opened as grants."""
    with _world(engine, session_factory, app, client, auth, OCT20, _government_versions) as world:
        world.open()
        assert world.redeem(GOVERNMENT_CAR, 20_000, point="P") == "ok"
        world.clock[0] = NOV2
        world.open()
        with engine.connect() as conn:
            runs = conn.scalar(text("SELECT count(*) FROM period_openings WHERE rule_code = "
                                    "'gasoline_government' AND run_id IS NOT NULL"))
        assert runs == 2  # October's and November's grants
        assert [r[4] for r in world.rows(GOVERNMENT_CAR)] == ["P"]  # October's row only: November untouched
        yield world


def test_the_quota_of_an_untouched_grant_shows_the_station_the_card_is_tied_to(tied: World) -> None:
    line = tied.gasoline(GOVERNMENT_CAR)
    assert line["period_end"] == "2026-11-30T21:00:00Z" and line["used_qty"] == 0
    assert line["home_point_code"] == "P"
    # what the ledger enforces on the first touch
    assert tied.redeem(GOVERNMENT_CAR, 20_000, point="Q") == "point_not_bound"
    assert tied.gasoline(GOVERNMENT_CAR)["home_point_code"] == "P"
    assert tied.redeem(GOVERNMENT_CAR, 20_000, point="P") == "ok"


def test_explain_of_an_untouched_grant_shows_the_station_the_card_is_tied_to(tied: World) -> None:
    r = tied.client.get(f"/api/v1/holders/vehicle/{GOVERNMENT_CAR}/explain",
                        params={"at": NOV2.isoformat(), "point_code": "Q"}, headers=tied.as_(Role.SUPERVISOR))
    assert r.status_code == 200, r.text
    (served,) = [e for e in r.json() if e.get("serving")]
    binding = served["allowance"]["binding"]
    assert (binding["home_point_code"], binding["point_ok"]) == ("P", False)
    assert [row[4] for row in tied.rows(GOVERNMENT_CAR)] == ["P"]  # explain made no row


def test_a_rolling_grant_is_made_a_row_once_however_its_window_moves(ahead: World) -> None:
    """The bound is the grant's period: a rolling grant has none, and the row made from it starts
    where its window starts, past the grant's start. That row still stands for the grant: a touch in
    a later window finds it, and neither the ledger nor the quota view brings the grant back."""
    car = 1  # a private car: 20 L every 7 days, from its first fill
    ahead.clock[0] = NOV18 + timedelta(hours=2)
    assert ahead.gasoline(car)["available_now_qty"] == 20_000
    assert ahead.redeem(car, 20_000) == "ok"
    first = ahead.rows(car)
    assert first == [(NOV18 + timedelta(hours=2), 20_000, 0, 0, "P")]  # the window starts at the fill
    with ahead.engine.connect() as conn:
        opened = conn.scalar(text("SELECT min(period_start) FROM period_openings WHERE run_id IS NOT NULL "
                                  "AND rule_code = 'gasoline_private'"))
    assert opened < first[0][0]  # after the grant's start
    ahead.clock[0] = NOV18 + timedelta(days=8)  # that window has ended: the next fill starts another
    line = ahead.gasoline(car)
    assert (line["used_qty"], line["available_now_qty"]) == (0, 20_000)
    assert ahead.redeem(car, 20_001) != "ok"
    assert ahead.redeem(car, 20_000) == "ok"
    (row,) = ahead.rows(car)
    assert row[0] > first[0][0] and row[1] == 20_000
    with ahead.factory() as s:
        assert [a["id"] > 0 for a in allowance_rows(s, "vehicle", [car], "gasoline")] == [True]
