"""Point stock on SQLite and PostgreSQL: deliveries checked and counted once per id, and the daily report
(opening, delivered, dispensed, closing) with its reconciliation, for one point or every point."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota.domain.stock import DeliveryPayload
from quota.ledger_reports import deliver_stock, stock_report
from quota.redemption import Redemption
from quota.service import LedgerService
from tests.integration.ledger_seed import T0, Population, seed

NOW = T0 + timedelta(days=2)


def rid() -> str:
    return str(uuid.uuid4())


def at(day: int, hour: int = 12) -> datetime:
    """``day`` of November 2026 (T0 is the 1st), UTC."""
    return T0 + timedelta(days=day - 1, hours=hour)


def recorded(db: Engine) -> tuple[int, int]:
    """(deliveries recorded, tracked (point, product) pairs)."""
    with db.connect() as conn:
        return (int(conn.execute(text("SELECT count(*) FROM stock_deliveries")).scalar_one()),
                int(conn.execute(text("SELECT count(*) FROM point_stock")).scalar_one()))


def test_delivery_to_an_unknown_or_closed_point_or_product_is_refused_and_records_nothing(world) -> None:
    svc, _, db = world
    with db.begin() as conn:
        conn.execute(text("UPDATE points SET active = false WHERE code = 'P2'"))
    assert svc.deliver_stock(rid(), "NOPE", "sugar", 1000).result == "point_unknown"
    assert svc.deliver_stock(rid(), "P1", "caviar", 1000).result == "product_unknown"
    assert svc.deliver_stock(rid(), "BAKERY", "sugar", 1000).result == "product_not_served"
    assert svc.deliver_stock(rid(), "P2", "sugar", 1000).result == "point_inactive"
    assert recorded(db) == (0, 0)
    assert stock_report(db, None, NOW.date(), NOW.date())["balances"] == []


def test_a_retried_delivery_counts_once_and_replays_its_first_answer(world) -> None:
    svc, pop, db = world
    delivery_id = rid()
    first = svc.deliver_stock(delivery_id, "P1", "sugar", 3000, "truck 7")
    assert (first.result, first.balance_qty, first.replayed) == ("ok", 3000, False)
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 1000, "P1")).ok
    again = svc.deliver_stock(delivery_id, "P1", "sugar", 3000, "truck 7")
    assert (again.result, again.balance_qty, again.replayed) == ("ok", 3000, True)  # as it was then
    assert again.delivered_at == first.delivered_at
    (balance,) = stock_report(db, "P1", NOW.date(), NOW.date())["balances"]
    assert (balance["delivered_qty"], balance["balance_qty"], balance["reconciled"]) == (3000, 2000, True)
    assert recorded(db) == (1, 1)


def test_another_payload_under_a_delivery_id_is_refused(world) -> None:
    svc, _, db = world
    delivery_id = rid()
    assert svc.deliver_stock(delivery_id, "P1", "sugar", 3000, "truck 7").ok
    for other in (("P1", "sugar", 3001, "truck 7"), ("P2", "sugar", 3000, "truck 7"),
                  ("P1", "gas", 3000, "truck 7"), ("P1", "sugar", 3000, "truck 8")):
        assert svc.deliver_stock(delivery_id, *other).result == "exists_with_different_payload"
    assert recorded(db) == (1, 1)
    (balance,) = stock_report(db, None, NOW.date(), NOW.date())["balances"]
    assert balance["balance_qty"] == 3000


def test_concurrent_retries_of_one_delivery_count_it_once(pg_engine: Engine) -> None:
    seed(pg_engine)
    delivery_id, barrier = rid(), threading.Barrier(4)
    answers = []

    def send() -> None:
        barrier.wait()
        answers.append(deliver_stock(pg_engine, delivery_id, DeliveryPayload("P1", "sugar", 500, "t"), NOW))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted((a.result, a.balance_qty, a.replayed) for a in answers) == [
        ("ok", 500, False)] + [("ok", 500, True)] * 3
    assert recorded(pg_engine) == (1, 1)


def _month(svc: LedgerService, pop: Population) -> None:
    """P1 sugar: 500 drawn before tracking began, then deliveries and draws over 1–5 November; P2 gas."""
    card = pop.family_card
    assert svc.redeem(Redemption(rid(), card[3], "sugar", 500, "P1", at(1, 9))).ok  # before tracking
    assert svc.deliver_stock(rid(), "P1", "sugar", 3000, "truck 1", at(1, 10)).balance_qty == 2500
    assert svc.redeem(Redemption(rid(), card[1], "sugar", 1000, "P1", at(2, 8))).ok
    assert svc.redeem(Redemption(rid(), card[2], "sugar", 200, "P1", at(2, 23))).ok
    assert svc.deliver_stock(rid(), "P1", "sugar", 2000, "truck 2", at(4, 0)).balance_qty == 3300
    assert svc.redeem(Redemption(rid(), card[2], "sugar", 700, "P1", at(4, 13))).ok
    assert svc.redeem(Redemption(rid(), card[1], "sugar", 300, "P1", at(5, 0))).ok  # after the report
    assert svc.deliver_stock(rid(), "P2", "gas", 40, "cylinders", at(3, 7)).balance_qty == 40
    assert svc.redeem(Redemption(rid(), card[1], "gas", 1, "P2", at(3, 9))).ok


def test_closing_balance_per_day_with_the_opening_from_before_day_from(world) -> None:
    svc, pop, db = world
    _month(svc, pop)
    report = stock_report(db, "P1", date(2026, 11, 2), date(2026, 11, 4))
    assert [(d["day"], d["opening_qty"], d["delivered_qty"], d["dispensed_qty"], d["closing_qty"])
            for d in report["days"]] == [
        ("2026-11-02", 2500, 0, 1200, 1300),  # opening: 3000 delivered − 500 drawn on the 1st
        ("2026-11-04", 1300, 2000, 700, 2600),  # the 3rd had no movement: its balance stayed 1300
    ]
    (balance,) = report["balances"]
    assert (balance["opening_qty"], balance["closing_qty"], balance["balance_qty"]) == (2500, 2600, 2300)
    assert balance["reconciled"] and report["reconciled"] and report["disagreements"] == []
    assert (balance["journal_dispensed_qty"], balance["recorded_delivered_qty"]) == (2700, 5000)


def test_days_are_those_of_the_deployment_calendar(world) -> None:
    svc, pop, db = world
    _month(svc, pop)  # 200 drawn on 2 November at 23:00 UTC: 3 November, 02:00 in Damascus
    report = stock_report(db, "P1", date(2026, 11, 3), date(2026, 11, 4), ZoneInfo("Asia/Damascus"))
    assert [(d["day"], d["opening_qty"], d["delivered_qty"], d["dispensed_qty"], d["closing_qty"])
            for d in report["days"]] == [
        ("2026-11-03", 1500, 0, 200, 1300),
        ("2026-11-04", 1300, 2000, 700, 2600),
    ]  # in UTC days the 200 fall on the 2nd: the 3rd has no movement
    assert [d["day"] for d in stock_report(db, "P1", date(2026, 11, 3), date(2026, 11, 4))["days"]] \
        == ["2026-11-04"]


def test_report_for_every_point_has_per_day_rows_and_names_a_disagreeing_pair(world) -> None:
    svc, pop, db = world
    _month(svc, pop)
    report = stock_report(db, None, date(2026, 11, 1), date(2026, 11, 30))
    assert [(d["day"], d["point_code"], d["product_code"], d["closing_qty"]) for d in report["days"]] == [
        ("2026-11-01", "P1", "sugar", 2500), ("2026-11-02", "P1", "sugar", 1300),
        ("2026-11-03", "P2", "gas", 39), ("2026-11-04", "P1", "sugar", 2600),
        ("2026-11-05", "P1", "sugar", 2300)]
    assert [(b["point_code"], b["product_code"], b["opening_qty"], b["closing_qty"])
            for b in report["balances"]] == [("P1", "sugar", 0, 2300), ("P2", "gas", 0, 39)]
    with db.begin() as conn:  # the running counter drifts from the journal
        conn.execute(text("UPDATE point_stock SET dispensed_qty = dispensed_qty - 1 WHERE point_code = 'P2'"))
    report = stock_report(db, None, date(2026, 11, 1), date(2026, 11, 30))
    assert report["reconciled"] is False
    assert report["disagreements"] == [{"point_code": "P2", "product_code": "gas", "delivered_qty": 40,
                                        "recorded_delivered_qty": 40, "dispensed_qty": 0,
                                        "journal_dispensed_qty": 1}]


def test_a_product_drawn_but_never_delivered_shows_its_days_untracked(world) -> None:
    svc, pop, db = world
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 20_000, "P1", at(3))).ok
    report = stock_report(db, "P1", date(2026, 11, 3), date(2026, 11, 3))
    assert report["balances"] == []
    assert report["days"] == [{"day": "2026-11-03", "point_code": "P1", "product_code": "diesel",
                               "tracked": False, "opening_qty": None, "delivered_qty": 0,
                               "dispensed_qty": 20_000, "closing_qty": None}]


# over HTTP ---------------------------------------------------------------------------------------
def test_deliveries_over_http(client: TestClient, auth, pop: Population, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    supervisor = auth(Role.SUPERVISOR)

    def deliver(**kw: object) -> tuple[int, dict[str, object]]:
        body = {"id": rid(), "point_code": "P1", "product_code": "sugar", "quantity_qty": 500, **kw}
        r = client.post("/api/v1/stock/deliveries", json=body, headers=supervisor)
        return r.status_code, r.json()

    for refused, status, code in (({"point_code": "NOPE"}, 422, "point_unknown"),
                                  ({"product_code": "caviar"}, 422, "product_unknown"),
                                  ({"point_code": "BAKERY"}, 409, "product_not_served")):
        answer = deliver(**refused)
        assert (answer[0], answer[1]["error"]) == (status, code)
    assert deliver(quantity_qty=0)[0] == 422
    no_id = {"point_code": "P1", "product_code": "sugar", "quantity_qty": 500}
    assert client.post("/api/v1/stock/deliveries", json=no_id, headers=supervisor).status_code == 422
    assert recorded(engine) == (0, 0)

    delivery_id = rid()
    first = deliver(id=delivery_id, reference="truck 7")
    assert first[0] == 201 and (first[1]["balance_qty"], first[1]["replayed"]) == (500, False)
    again = deliver(id=delivery_id, reference="truck 7")
    assert again[0] == 201 and again[1] == {**first[1], "replayed": True}
    other = deliver(id=delivery_id, reference="truck 7", quantity_qty=501)
    assert (other[0], other[1]["error"]) == (409, "exists_with_different_payload")
    assert recorded(engine) == (1, 1)

    params = {"day_from": "2026-11-01", "day_to": "2026-11-30"}
    report = client.get("/api/v1/stock/report", params=params, headers=supervisor)
    assert report.status_code == 200 and report.json()["reconciled"] is True
    (day,) = report.json()["days"]
    assert (day["point_code"], day["opening_qty"], day["delivered_qty"], day["closing_qty"]) \
        == ("P1", 0, 500, 500)
    backwards = {"day_from": "2026-11-30", "day_to": "2026-11-01"}
    bad = client.get("/api/v1/stock/report", params=backwards, headers=supervisor)
    assert (bad.status_code, bad.json()["error"]) == (422, "bad_range")
