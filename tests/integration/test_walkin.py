"""Walk-in sales on SQLite and PostgreSQL: cap boundary, replay by id, stock, the report, no holder."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from quota.domain.stock import DeliveryPayload
from quota.ledger_reports import deliver_stock, stock_report
from quota.redemption import StaticTerms
from quota.service import LedgerService
from quota.walkin import WalkInService
from tests.integration.ledger_seed import T0, seed

NOW = T0 + timedelta(days=2, hours=9)  # 12:00 in Damascus (UTC+3)


def rid() -> str:
    return str(uuid.uuid4())


def make_walk_in(db: Engine, default_cap_qty: int = 0) -> WalkInService:
    """The seed population, with sugar sold walk-in at 2,000 per kg (its free price)."""
    seed(db)
    with db.begin() as conn:
        conn.execute(text("UPDATE products SET walk_in = true, free_price_minor = 2000 WHERE code = 'sugar'"))
    return WalkInService(db, default_cap_qty=default_cap_qty, clock=lambda: NOW)


@pytest.fixture
def walk_in(engine: Engine) -> WalkInService:
    return make_walk_in(engine)


def test_cap_boundary_exactly_at_the_cap_then_one_more_is_refused(walk_in: WalkInService) -> None:
    assert walk_in.set_cap("sugar", 3000, "admin1") == "ok"
    first = walk_in.sell(rid(), "sugar", 2000, "P1", "clerk1")
    assert (first.result, first.quantity_qty, first.price_minor, first.remaining_qty) \
        == ("ok", 2000, 4000, 1000)
    assert walk_in.sell(rid(), "sugar", 1001, "P1", "clerk1").result == "walk_in_cap_reached"
    at_cap = walk_in.sell(rid(), "sugar", 1000, "P1", "clerk1")
    assert at_cap.ok and at_cap.remaining_qty == 0
    one_more = walk_in.sell(rid(), "sugar", 1, "P1", "clerk1")
    assert (one_more.result, one_more.quantity_qty, one_more.price_minor) == ("walk_in_cap_reached", 0, 0)
    # the cap is per point: another point still sells
    assert walk_in.sell(rid(), "sugar", 3000, "P2", "clerk2").ok


def test_cap_resets_at_local_midnight_and_a_point_cap_wins(walk_in: WalkInService) -> None:
    walk_in.set_cap("sugar", 1000, "admin1")
    walk_in.set_cap("sugar", 500, "admin1", point_code="P2")
    assert walk_in.sell(rid(), "sugar", 1000, "P1", "c", now=NOW).ok
    before_midnight = NOW.replace(hour=20, minute=59, second=59)  # 23:59:59 in Damascus
    assert walk_in.sell(rid(), "sugar", 1, "P1", "c", now=before_midnight).result == "walk_in_cap_reached"
    assert walk_in.sell(rid(), "sugar", 1000, "P1", "c", now=NOW.replace(hour=21)).ok  # 00:00 next day
    assert walk_in.sell(rid(), "sugar", 501, "P2", "c").result == "walk_in_cap_reached"
    assert walk_in.sell(rid(), "sugar", 500, "P2", "c").ok


def test_default_cap_from_the_setting(engine: Engine) -> None:
    closed = make_walk_in(engine, default_cap_qty=0)
    assert closed.sell(rid(), "sugar", 1, "P1", "c").result == "walk_in_cap_reached"
    opened = WalkInService(engine, default_cap_qty=250, clock=lambda: NOW)
    assert opened.sell(rid(), "sugar", 250, "P1", "c").ok
    assert opened.sell(rid(), "sugar", 1, "P1", "c").result == "walk_in_cap_reached"


def test_replay_by_id(walk_in: WalkInService) -> None:
    walk_in.set_cap("sugar", 1000, "admin1")
    sale_id = rid()
    first = walk_in.sell(sale_id, "sugar", 800, "P1", "clerk1")
    again = walk_in.sell(sale_id, "sugar", 800, "P1", "clerk1")
    assert again.replayed and (again.result, again.quantity_qty, again.remaining_qty) == ("ok", 800, 200)
    assert not first.replayed
    assert walk_in.sell(sale_id, "sugar", 700, "P1", "clerk1").result == "exists_with_different_payload"
    refused_id = rid()
    assert walk_in.sell(refused_id, "sugar", 201, "P1", "clerk1").result == "walk_in_cap_reached"
    replayed = walk_in.sell(refused_id, "sugar", 201, "P1", "clerk1")
    assert replayed.replayed and replayed.result == "walk_in_cap_reached"
    day = walk_in.report("P1", NOW.date(), NOW.date()).days
    assert [(d.sales, d.sold_qty) for d in day] == [(1, 800)]  # sold once, not three times


def test_sale_decreases_point_stock_and_reconciles(walk_in: WalkInService) -> None:
    db = walk_in.db
    walk_in.set_cap("sugar", 100_000, "admin1")
    assert deliver_stock(db, rid(), DeliveryPayload("P1", "sugar", 3000, "truck 1"), NOW).balance_qty == 3000
    assert walk_in.sell(rid(), "sugar", 2500, "P1", "clerk1").ok
    assert walk_in.sell(rid(), "sugar", 501, "P1", "clerk1").result == "point_out_of_stock"
    assert walk_in.sell(rid(), "sugar", 500, "P1", "clerk1").ok
    (balance,) = stock_report(db, "P1", NOW.date(), NOW.date())["balances"]
    assert balance["balance_qty"] == 0 and balance["dispensed_qty"] == 3000 and balance["reconciled"]


def test_refusals_by_product_and_point(walk_in: WalkInService) -> None:
    walk_in.set_cap("sugar", 100_000, "admin1")
    assert walk_in.sell(rid(), "diesel", 1000, "P1", "c").result == "not_a_walk_in_product"
    assert walk_in.sell(rid(), "caviar", 1, "P1", "c").result == "product_unknown"
    assert walk_in.sell(rid(), "sugar", 1, "BAKERY", "c").result == "product_not_served"
    assert walk_in.set_cap("diesel", 10, "admin1") == "not_a_walk_in_product"


def test_a_sale_has_no_holder_and_touches_no_allowance(walk_in: WalkInService) -> None:
    walk_in.set_cap("sugar", 5000, "admin1")
    with walk_in.db.connect() as conn:
        before = conn.execute(text("SELECT sum(used_qty), sum(granted_qty) FROM allowances")).one()
    sale_id = rid()
    assert walk_in.sell(sale_id, "sugar", 1500, "P1", "clerk1").ok
    with walk_in.db.connect() as conn:
        after = conn.execute(text("SELECT sum(used_qty), sum(granted_qty) FROM allowances")).one()
        entry = conn.execute(text("SELECT kind, holder_type, holder_id, allowance_id, card_serial, actor, "
                                  "price_minor FROM journal WHERE entry_id = :i"), {"i": sale_id}).one()
    assert tuple(before) == tuple(after)
    assert tuple(entry) == ("walk_in", None, None, None, None, "clerk1", 3000)
    journal = LedgerService(walk_in.db, StaticTerms(()))
    assert journal.seal() and journal.verify().ok  # sealed into the chain like any entry


def test_report_shows_the_sales(walk_in: WalkInService) -> None:
    walk_in.set_cap("sugar", 5000, "admin1")
    ids = [rid(), rid()]
    walk_in.sell(ids[0], "sugar", 1000, "P1", "clerk1")
    walk_in.sell(ids[1], "sugar", 500, "P1", "clerk1")
    walk_in.sell(rid(), "sugar", 250, "P2", "clerk2", now=NOW + timedelta(days=1))
    report = walk_in.report(None, NOW.date(), NOW.date() + timedelta(days=1))
    assert [(d.day, d.point_code, d.sales, d.sold_qty, d.price_minor, d.cap_qty) for d in report.days] == [
        (NOW.date(), "P1", 2, 1500, 3000, 5000),
        (NOW.date() + timedelta(days=1), "P2", 1, 250, 500, 5000),
    ]
    assert [s["entry_id"] for s in report.sales][:2] == ids
    only_p1 = walk_in.report("P1", NOW.date(), NOW.date())
    assert {s["point_code"] for s in only_p1.sales} == {"P1"} and len(only_p1.sales) == 2


def test_concurrent_sellers_never_pass_the_cap_on_postgresql(pg_engine: Engine) -> None:
    walk_in = make_walk_in(pg_engine)
    walk_in.set_cap("sugar", 1000, "admin1")
    results: list[str] = []
    lock = threading.Lock()

    def sell() -> None:
        outcome = walk_in.sell(rid(), "sugar", 200, "P1", "clerk1")
        with lock:
            results.append(outcome.result)

    threads = [threading.Thread(target=sell) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] * 5 + ["walk_in_cap_reached"] * 7
    (day,) = walk_in.report("P1", NOW.date(), NOW.date()).days
    assert (day.sales, day.sold_qty) == (5, 1000)
