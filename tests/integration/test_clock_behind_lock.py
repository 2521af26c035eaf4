"""A movement whose clock was read before it waited for its allowance row is dated no earlier than the
window it lands in.

A pump's post, or a group of redemptions, reads the time and then waits for the row; meanwhile a writer
whose clock was read later restarts the holder's rolling window. Before, the post was journalled before
the window it counts in, so ``reconcile`` — which sums a rolling window's entries from its start —
reported a ``used_mismatch`` on a ledger nobody edited (found by an audit with real threads and a real
clock); and the group, judging the row at its earlier time, refused the family ``not_eligible``.

Seed (``ledger_seed``): gas one cylinder every 23 days (rolling); family 1 gets five per window here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from quota.engine import GroupCommitEngine
from quota.redemption import Outcome, Redemption, StaticTerms
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, TERMS, Population, seed
from tests.integration.pg_locks import wait_for_lock_waiter
from tests.integration.test_ledger_reversals import World, rid


def five_cylinders(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("UPDATE allowances SET base_qty = 5, granted_qty = 5 "
                          "WHERE holder_type = 'family' AND holder_id = 1 AND product_code = 'gas'"))


def test_a_post_that_read_its_clock_before_a_window_restart_is_dated_in_the_new_window(world: World) -> None:
    svc, pop, db = world
    five_cylinders(db)
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1", now=NOW)).result == "ok"
    ends = NOW + timedelta(days=23)
    assert svc.hold("pump-1", card, "gas", 1, "P1", now=ends - timedelta(seconds=60)).result == "ok"
    # Another point's redemption, clocked after the window ended, restarts it ...
    restart = ends + timedelta(seconds=1)
    assert svc.redeem(Redemption(rid(), pop.member_cards[1][0], "gas", 1, "P2", now=restart)).result == "ok"
    # ... while the pump's post, clocked just before, waited for the row.
    posted = svc.post("pump-1", 1, now=ends + timedelta(milliseconds=500), point="P1")
    assert posted.result == "ok"
    with db.connect() as conn:
        created = conn.execute(text("SELECT created_at FROM journal WHERE kind = 'post'")).scalar_one()
    assert str(created)[:19] == restart.strftime("%Y-%m-%d %H:%M:%S")
    report = svc.reconcile()
    assert report.ok, report.findings


MOVEMENTS: dict[str, Callable[[LedgerService, Population], Outcome]] = {
    "redeem": lambda svc, pop: svc.redeem(Redemption(rid(), pop.member_cards[1][1], "gas", 1, "P2")),
    "hold": lambda svc, pop: svc.hold(rid(), pop.member_cards[1][1], "gas", 1, "P2"),
    "topup": lambda svc, pop: svc.topup(rid(), "family", 1, "gas", 1, "large family", "user:reg"),
}


@pytest.mark.parametrize("kind", sorted(MOVEMENTS))
def test_a_movement_that_waited_for_a_restarted_window_lands_in_it(pg_engine: Engine, kind: str) -> None:
    """PostgreSQL: the movement's lock query picks the row as it was, waits for the writer holding it, and
    gets the row with the window that writer restarted at a later time than the movement's clock; before,
    a redemption group, a hold or a top-up then judged the window "not yet begun": ``not_eligible``."""
    pop = seed(pg_engine)
    five_cylinders(pg_engine)
    terms = StaticTerms(TERMS)
    group_clock = NOW + timedelta(days=23, seconds=1)  # the window from NOW has ended at NOW + 23 days
    with GroupCommitEngine(pg_engine, terms, clock=lambda: group_clock) as eng:
        svc = LedgerService(pg_engine, terms, eng, clock=lambda: group_clock)
        assert svc.redeem(Redemption(rid(), pop.family_card[1], "gas", 1, "P1", now=NOW)).result == "ok"
        restarted = group_clock + timedelta(seconds=2)
        other = pg_engine.connect()
        tx = other.begin()  # another writer, clocked later, restarts the window and holds the row
        other.execute(text("UPDATE allowances SET period_start = :s, period_end = :e, used_qty = 1 "
                           "WHERE holder_id = 1 AND product_code = 'gas'"),
                      {"s": restarted, "e": restarted + timedelta(days=23)})
        answers: list[str] = []
        waiting = threading.Thread(target=lambda: answers.append(MOVEMENTS[kind](svc, pop).result))
        waiting.start()
        wait_for_lock_waiter(pg_engine, "the group")
        tx.commit()
        other.close()
        waiting.join(30)
    assert answers == ["ok"]
    with pg_engine.connect() as conn:
        created = conn.execute(text("SELECT max(created_at) FROM journal WHERE kind = :k"),
                               {"k": kind}).scalar_one()
    assert created >= restarted
