"""PostgreSQL: a redemption group that waited for a point's stock row sees the pump holds committed by the
transaction it waited for, and no longer sees the ones that transaction posted.

The group locks the stock rows and sums the point's pending holds. Before, the sum was a subquery of the
locking statement, which reads the snapshot taken before the wait (READ COMMITTED): a hold reserved by the
transaction holding the row was missed — a 20 L redemption took fuel a running pump had been promised (an
audit saw it in 21 of 60 races: the point's books at −10 L) — and a hold posted meanwhile was counted
twice, refusing a legitimate redemption ``point_out_of_stock``, a refusal its retry replays.

Seed (``ledger_seed``): diesel 200 L a month per family, at most 50 L a fill; P1 gets 50 L of stock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import Connection, Engine, text

from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, TERMS, seed
from tests.integration.pg_locks import wait_for_lock_waiter
from tests.integration.test_ledger_reversals import rid


def _stock(db: Engine, qty: int) -> None:
    with db.begin() as conn:
        conn.execute(text("INSERT INTO point_stock (point_code, product_code, delivered_qty, dispensed_qty) "
                          "VALUES ('P1', 'diesel', :q, 0)"), {"q": qty})


def _redeem_while_row_held(db: Engine, ledger: LedgerService, card: str, qty: int,
                           holder: Callable[[Connection], None]) -> str:
    """Run ``holder`` in a transaction that locks P1's diesel stock row, start a redemption (its group
    waits for the row), then commit; the redemption's result."""
    conn = db.connect()
    tx = conn.begin()
    conn.execute(text("SELECT 1 FROM point_stock WHERE point_code = 'P1' AND product_code = 'diesel' "
                      "FOR UPDATE"))
    holder(conn)
    answers: list[str] = []
    waiting = threading.Thread(target=lambda: answers.append(
        ledger.redeem(Redemption(rid(), card, "diesel", qty, "P1")).result))
    waiting.start()
    wait_for_lock_waiter(db, "the redemption")
    tx.commit()
    conn.close()
    waiting.join(30)
    return answers[0]


def test_a_hold_committed_while_the_group_waited_sets_its_stock_aside(pg_engine: Engine) -> None:
    pop = seed(pg_engine)
    _stock(pg_engine, 50_000)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(pg_engine, terms, clock=lambda: NOW) as eng:
        ledger = LedgerService(pg_engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW)

        def pump_reserves(conn: Connection) -> None:  # what a hold's transaction writes under the lock
            conn.execute(text("INSERT INTO holds (id, allowance_id, point_code, reserved_qty, state, "
                              "expires_at, created_at) VALUES (:i, :a, 'P1', 40000, 'pending', :e, :n)"),
                         {"i": rid(), "a": pop.allowance_of[(1, "diesel")], "e": NOW + timedelta(minutes=10),
                          "n": NOW})

        result = _redeem_while_row_held(pg_engine, ledger, pop.family_card[2], 20_000, pump_reserves)
    assert result == "point_out_of_stock"  # 50 L less the pump's 40 L leaves 10 L


def test_a_hold_posted_while_the_group_waited_is_not_counted_twice(pg_engine: Engine) -> None:
    pop = seed(pg_engine)
    _stock(pg_engine, 50_000)
    terms = StaticTerms(TERMS)
    with GroupCommitEngine(pg_engine, terms, clock=lambda: NOW) as eng:
        ledger = LedgerService(pg_engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW)
        assert ledger.hold("pump-1", pop.family_card[1], "diesel", 40_000, "P1").result == "ok"

        def pump_posts(conn: Connection) -> None:  # what the post's transaction writes under the lock
            conn.execute(text("UPDATE holds SET state = 'posted', posted_qty = 30000 WHERE id = 'pump-1'"))
            conn.execute(text("UPDATE point_stock SET dispensed_qty = dispensed_qty + 30000 "
                              "WHERE point_code = 'P1' AND product_code = 'diesel'"))

        result = _redeem_while_row_held(pg_engine, ledger, pop.family_card[2], 10_000, pump_posts)
    assert result == "ok"  # 50 L less the 30 L dispensed leaves 20 L
