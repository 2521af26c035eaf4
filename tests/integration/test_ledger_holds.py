"""Holds, top-ups, rebinding and batch tiers as a point and a family notice them, on SQLite and PostgreSQL:
a voided hold leaves no fill behind, holds respect and set aside a point's stock, only the hold's point
settles it, a top-up after a rolling window ended is drawable, a mistyped rebind costs nothing, and a
heating-diesel family reaches the free-price tier after the last batch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, text

from card_backend.auth.principal import Role
from card_backend.point.models import Point
from quota.domain.terms import BatchRelease, PeriodKind, PriceTier, Terms
from quota.engine import GroupCommitEngine
from quota.models import Allowance, Product, RuleVersion
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, TERMS, Population, seed

NOW = T0 + timedelta(days=2)
HEATING = Terms(rule_version_id=4, product_code="heating_diesel", period_kind=PeriodKind.SEASON,
                price_per_qty=1000, tiers=(PriceTier("subsidised", 500), PriceTier("free", 1700, 50_000)),
                batches=(BatchRelease(0, 100_000), BatchRelease(45, 100_000, catch_up=True),
                         BatchRelease(75, 100_000)))
ALL_TERMS = (*TERMS, HEATING)


def rid() -> str:
    return str(uuid.uuid4())


def add_heating(db: Engine, families: int) -> None:
    """The demo's heating diesel: 200 L in batches of 100 L (day 0, catch-up day 45, day 75) + 50 L free."""
    with db.begin() as conn:
        conn.execute(insert(Product), [{"code": "heating_diesel", "name_ar": "مازوت التدفئة",
                                        "name_en": "Heating diesel", "unit": "ml", "price_per_qty": 1000}])
        conn.execute(insert(RuleVersion), [{"id": 4, "code": "heating_diesel", "version": 1,
                                            "product_code": "heating_diesel", "holder_type": "family",
                                            "body": {}, "effective_from": date(2026, 1, 1),
                                            "created_by": "test"}])
        conn.execute(insert(Point), [{"code": "HEAT", "name_ar": "مازوت", "name_en": "Heating depot",
                                      "kind": "fuel_station", "governorate": "damascus",
                                      "products": ["heating_diesel"], "active": True}])
        conn.execute(insert(Allowance), [
            {"id": 100 + f, "holder_type": "family", "holder_id": f, "product_code": "heating_diesel",
             "rule_version_id": 4, "period_start": T0, "period_end": T0 + timedelta(days=167),
             "base_qty": 200_000, "granted_qty": 250_000} for f in range(1, families + 1)])


def track_stock(db: Engine, point: str, product: str, balance_qty: int) -> None:
    """The point's tracked stock (as a first delivery starts it), nothing dispensed yet."""
    with db.begin() as conn:
        conn.execute(text("INSERT INTO point_stock (point_code, product_code, delivered_qty, dispensed_qty) "
                          "VALUES (:p, :q, :b, 0)"), {"p": point, "q": product, "b": balance_qty})


def balance(db: Engine, point: str, product: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT delivered_qty - dispensed_qty FROM point_stock "
                                     "WHERE point_code = :p AND product_code = :q"),
                                {"p": point, "q": product}).scalar_one())


@pytest.fixture
def world(engine: Engine) -> Iterator[tuple[LedgerService, Population, Engine]]:
    pop = seed(engine)
    add_heating(engine, pop.families)
    terms = StaticTerms(ALL_TERMS)
    with GroupCommitEngine(engine, terms, clock=lambda: NOW) as eng:
        yield LedgerService(engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW), pop, engine


def test_a_voided_hold_is_no_fill_the_car_redeems_at_once_anywhere(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, _ = world
    card = pop.family_card[1]  # diesel: one fill a day, bound to its first station
    hold = rid()
    assert svc.hold(hold, card, "diesel", 40_000, "P1").ok
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1")).result == "too_soon"  # pump running
    assert svc.void(hold).ok
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P2", NOW + timedelta(minutes=1))).ok


def test_a_posted_hold_is_the_fill_and_binds_the_station(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, _ = world
    card = pop.family_card[1]
    hold = rid()
    assert svc.hold(hold, card, "diesel", 40_000, "P1").ok
    assert svc.post(hold, 30_000).ok
    soon = svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1", NOW + timedelta(hours=23)))
    assert soon.result == "too_soon" and soon.possible_at == NOW + timedelta(days=1)
    elsewhere = Redemption(rid(), card, "diesel", 10_000, "P2", NOW + timedelta(days=1))
    assert svc.redeem(elsewhere).result == "point_not_bound"


def test_a_hold_needs_stock_and_sets_it_aside(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    track_stock(db, "P2", "diesel", 30_000)
    assert svc.hold(rid(), pop.family_card[1], "diesel", 30_001, "P2").result == "point_out_of_stock"
    first = rid()
    assert svc.hold(first, pop.family_card[1], "diesel", 30_000, "P2").ok
    assert svc.hold(rid(), pop.family_card[2], "diesel", 1, "P2").result == "point_out_of_stock"
    assert svc.post(first, 25_000).ok and balance(db, "P2", "diesel") == 5_000
    assert svc.hold(rid(), pop.family_card[2], "diesel", 5_000, "P2").ok


def test_a_redemption_leaves_alone_the_stock_a_running_pump_was_promised(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    track_stock(db, "P1", "diesel", 30_000)
    hold = rid()
    assert svc.hold(hold, pop.family_card[1], "diesel", 30_000, "P1").ok
    at_the_till = Redemption(rid(), pop.family_card[2], "diesel", 20_000, "P1")
    assert svc.redeem(at_the_till).result == "point_out_of_stock"
    assert svc.post(hold, 25_000).ok and balance(db, "P1", "diesel") == 5_000
    assert svc.redeem(Redemption(rid(), pop.family_card[2], "diesel", 5_000, "P1")).ok  # released: sold


def test_a_post_beyond_the_tracked_stock_is_posted_and_named(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    track_stock(db, "P1", "diesel", 30_000)
    hold = rid()
    assert svc.hold(hold, pop.family_card[1], "diesel", 30_000, "P1").ok
    with db.begin() as conn:  # the books corrected under the running pump (20 L found short)
        conn.execute(text("UPDATE point_stock SET delivered_qty = delivered_qty - 20000"))
    assert svc.post(hold, 30_000).ok  # what the pump dispensed is posted whatever the books say
    assert balance(db, "P1", "diesel") == -20_000
    with db.connect() as conn:
        reason = conn.execute(text("SELECT reason FROM journal WHERE kind = 'post'")).scalar_one()
    assert reason == "stock_overdrawn: balance_qty=-20000"
    (line,) = svc.stock_report("P1", NOW.date(), NOW.date())["balances"]
    assert line["balance_qty"] == -20_000 and line["overdrawn"] is True  # the report says so too


def test_a_card_tied_to_no_station_yet_fills_at_one_pump_at_a_time(world) -> None:  # type: ignore[no-untyped-def]
    _, pop, db = world
    # diesel without its one-fill-a-day gap: only the binding to one station spaces the fills
    gapless = StaticTerms((*TERMS[:2], replace(TERMS[2], min_gap_s=None), HEATING))
    free = LedgerService(db, gapless, None, hold_ttl_s=600, clock=lambda: NOW)
    card = pop.family_card[3]
    first = rid()
    assert free.hold(first, card, "diesel", 20_000, "P1").ok
    assert free.hold(rid(), card, "diesel", 20_000, "P2").result == "too_soon"  # no second pump elsewhere
    assert free.post(first, 20_000).ok
    assert free.hold(rid(), card, "diesel", 10_000, "P2").result == "point_not_bound"
    assert free.hold(rid(), card, "diesel", 10_000, "P1").ok


def test_a_topup_after_the_rolling_window_ended_is_redeemable(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, _ = world
    card = pop.family_card[1]  # gas: one cylinder every 23 days
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1")).ok
    later = NOW + timedelta(days=30)
    top = svc.topup(rid(), "family", 1, "gas", 1, "second cylinder for a large family", "user:reg", now=later)
    assert top.ok and top.remaining_qty == 2
    assert svc.redeem(Redemption(rid(), card, "gas", 2, "P1", later + timedelta(days=1))).ok


def test_a_mistyped_rebind_is_refused_and_costs_no_change(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 10_000, "P1")).ok
    assert svc.rebind(rid(), "family", 1, "diesel", "P9", "user:reg").result == "point_unknown"
    assert svc.rebind(rid(), "family", 1, "diesel", "BAKERY", "user:reg").result == "product_not_served"
    with db.connect() as conn:
        row = conn.execute(text("SELECT home_point_code, binding_changes FROM allowances "
                                "WHERE holder_id = 1 AND product_code = 'diesel'")).one()
    assert tuple(row) == ("P1", 0)
    assert svc.rebind(rid(), "family", 1, "diesel", "P2", "user:reg").ok


def test_a_heating_family_buys_into_the_free_tier_after_the_last_batch(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, _ = world
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "heating_diesel", 100_000, "HEAT")).ok  # batch 1
    day75 = T0 + timedelta(days=75)
    rest = svc.redeem(Redemption(rid(), card, "heating_diesel", 150_000, "HEAT", day75))
    assert rest.ok and rest.price_minor == 100 * 500 + 50 * 1700 and rest.remaining_qty == 0
    waited = svc.redeem(Redemption(rid(), pop.family_card[2], "heating_diesel", 250_001, "HEAT", day75))
    assert waited.result == "exceeds_allowance"


# over HTTP ----------------------------------------------------------------------------------------
def test_only_the_holds_own_point_posts_or_voids_it(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    def device(point: str) -> dict[str, str]:
        r = client.post(f"/api/v1/points/{point}/devices", json={"name": f"pump-{point}"},
                        headers=auth(Role.REGISTRAR))
        return {"Authorization": f"Bearer {r.json()['token']}"}

    own, other = device("P1"), device("P2")
    hold = {"id": str(uuid.uuid4()), "card_serial": pop.family_card[1], "product_code": "diesel",
            "quantity_qty": 40_000, "point_code": "P1"}
    assert client.post("/api/v1/holds", json=hold, headers=own).status_code == 200
    voided = client.post(f"/api/v1/holds/{hold['id']}/void", headers=other)
    assert voided.status_code == 403 and voided.json()["error"] == "wrong_point"
    stolen = client.post(f"/api/v1/holds/{hold['id']}/post", json={"quantity_qty": 1}, headers=other)
    assert stolen.status_code == 403 and stolen.json()["error"] == "wrong_point"
    posted = client.post(f"/api/v1/holds/{hold['id']}/post", json={"quantity_qty": 30_000}, headers=own)
    assert posted.status_code == 200 and posted.json()["quantity_qty"] == 30_000


def test_a_mistyped_rebind_over_http_is_a_named_refusal(client: TestClient, auth, pop: Population) -> None:  # type: ignore[no-untyped-def]
    registrar, clerk = auth(Role.REGISTRAR), auth(Role.CLERK)
    first = {"id": str(uuid.uuid4()), "card_serial": pop.family_card[1], "product_code": "diesel",
             "quantity_qty": 10_000, "point_code": "P1"}
    assert client.post("/api/v1/redemptions", json=first, headers=clerk).status_code == 200
    move = {"id": str(uuid.uuid4()), "holder_type": "family", "holder_id": 1, "product_code": "diesel",
            "point_code": "P9"}
    r = client.post("/api/v1/bindings", json=move, headers=registrar)
    assert r.status_code == 409 and r.json()["error"] == "point_unknown"
    ok = client.post("/api/v1/bindings", json={**move, "id": str(uuid.uuid4()), "point_code": "P2"},
                     headers=registrar)
    assert ok.status_code == 200  # the typo used up none of the one change allowed
