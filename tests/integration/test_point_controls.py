"""A point's stock and corrections stay with that point (RULES.md: a closed station credited with
millions of litres; fuel sold outside the card), on SQLite and PostgreSQL:

- a supervisor tied to a point records deliveries to, and reverses debits of, that point only;
- a walk-in sale cannot take the stock a running pump's hold set aside;
- a pair's first delivery, made while a redemption at that pair is being committed, counts it
  (PostgreSQL: before, the redemption was never taken off the new stock row).
"""

from __future__ import annotations

import threading
import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota import group_repository
from quota.engine import GroupCommitEngine
from quota.ledger_reports import stock_report
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from quota.walkin import WalkInService
from tests.integration.ledger_seed import NOW, TERMS, Population, seed


def rid() -> str:
    return str(uuid.uuid4())


def point_id(engine: Engine, code: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM points WHERE code = :c"), {"c": code}).scalar_one())


def test_a_supervisor_tied_to_a_point_delivers_and_reverses_there_only(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population, engine: Engine, app
) -> None:
    sup = auth(Role.SUPERVISOR, point_id=point_id(engine, "P1"))
    huge = {"id": rid(), "point_code": "P2", "product_code": "diesel", "quantity_qty": 10**12,
            "reference": "x"}
    refused = client.post("/api/v1/stock/deliveries", json=huge, headers=sup)
    assert refused.status_code == 403 and refused.json()["error"] == "wrong_point"
    mine = {**huge, "id": rid(), "point_code": "P1", "quantity_qty": 100_000}
    assert client.post("/api/v1/stock/deliveries", json=mine, headers=sup).status_code == 201
    elsewhere = app.state.ledger.redeem(Redemption(rid(), pop.family_card[1], "diesel", 30_000, "P2"))
    here = app.state.ledger.redeem(Redemption(rid(), pop.family_card[2], "diesel", 30_000, "P1"))
    r = client.post("/api/v1/reversals", json={"id": rid(), "ref_entry_id": elsewhere.entry_id,
                                               "reason": "wrong pump"}, headers=sup)
    assert r.status_code == 403 and r.json()["error"] == "wrong_point"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal WHERE kind = 'reverse'")).scalar_one() == 0
    r = client.post("/api/v1/reversals", json={"id": rid(), "ref_entry_id": here.entry_id,
                                               "reason": "wrong pump"}, headers=sup)
    assert r.status_code == 200 and r.json()["result"] == "ok"
    national = auth(Role.SUPERVISOR)  # a supervisor tied to no point corrects any point's debits
    r = client.post("/api/v1/reversals", json={"id": rid(), "ref_entry_id": elsewhere.entry_id,
                                               "reason": "wrong pump"}, headers=national)
    assert r.status_code == 200


def test_a_walk_in_sale_leaves_the_stock_a_pump_hold_set_aside(world) -> None:  # type: ignore[no-untyped-def]
    svc, pop, db = world
    with db.begin() as conn:
        conn.execute(text("UPDATE products SET walk_in = true, free_price_minor = 1700 "
                          "WHERE code = 'diesel'"))
    walk_in = WalkInService(db, default_cap_qty=10**9, clock=lambda: NOW)
    assert svc.deliver_stock(rid(), "P1", "diesel", 50_000).ok
    hold = rid()
    assert svc.hold(hold, pop.family_card[1], "diesel", 50_000, "P1").ok  # the pump runs on all of it
    assert walk_in.sell(rid(), "diesel", 40_000, "P1", "clerk").result == "point_out_of_stock"
    assert svc.post(hold, 50_000).ok
    (pair,) = stock_report(db, "P1", NOW.date(), NOW.date())["balances"]
    assert pair["balance_qty"] == 0 and not pair["overdrawn"]


def test_a_first_delivery_counts_a_redemption_being_committed(  # type: ignore[no-untyped-def]
    pg_engine: Engine, monkeypatch
) -> None:
    """PostgreSQL only: SQLite has one writer, so the two cannot overlap."""
    db, pop = pg_engine, seed(pg_engine)
    terms = StaticTerms(TERMS)
    engine = GroupCommitEngine(db, terms, clock=lambda: NOW).start()
    svc = LedgerService(db, terms, engine, clock=lambda: NOW)
    written, release = threading.Event(), threading.Event()
    write = group_repository.write

    def held_open(*args, **kwargs):  # type: ignore[no-untyped-def]
        write(*args, **kwargs)  # the group's journal row is written, its transaction not yet committed
        written.set()
        release.wait(10)

    monkeypatch.setattr(group_repository, "write", held_open)
    answers: dict[str, object] = {}
    group = threading.Thread(target=lambda: answers.setdefault(
        "redeem", svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 1000, "P1"))))
    group.start()
    assert written.wait(10)
    delivery = threading.Thread(target=lambda: answers.setdefault(
        "deliver", svc.deliver_stock(rid(), "P1", "sugar", 3000, "truck")))
    delivery.start()
    time.sleep(0.5)  # the delivery now waits for the group's transaction (before: summed without it)
    release.set()
    group.join(10)
    delivery.join(10)
    engine.stop()
    report = stock_report(db, "P1", NOW.date(), NOW.date())
    (pair,) = report["balances"]
    assert answers["redeem"].ok and answers["deliver"].ok  # type: ignore[attr-defined]
    assert report["reconciled"] and pair["balance_qty"] == 2000
