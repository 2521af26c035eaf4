"""Concurrency on PostgreSQL: 64 workers, 10 hot holders, two engines (two API processes), retries, a
point's stock rows and pump posts racing redemptions."""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from card_backend.db import make_engine
from card_backend.migrate import upgrade
from quota.engine import GroupCommitEngine
from quota.ledger_repository import journal_used_by_allowance
from quota.redemption import Outcome, Redemption, StaticTerms
from quota.service import LedgerService
from tests.conftest import PG_ADMIN_URL
from tests.integration.ledger_seed import T0, TERMS, seed

pytestmark = pytest.mark.postgres
NOW = T0 + timedelta(days=2)
WORKERS = 64


def hot_requests(pop, count: int, rng: random.Random) -> list[Redemption]:  # type: ignore[no-untyped-def]
    """Requests on 10 families' sugar, from family and member cards at two points."""
    requests = []
    for _ in range(count):
        family = rng.randint(1, 10)
        card = rng.choice([pop.family_card[family], *pop.member_cards[family]])
        requests.append(Redemption(str(uuid.uuid4()), card, "sugar", rng.choice([100, 250, 400]),
                                   rng.choice(["P1", "P2"])))
    return requests


def run(engines: list[GroupCommitEngine], requests: list[Redemption]) -> list[tuple[Redemption, Outcome]]:
    def work(n: int) -> list[tuple[Redemption, Outcome]]:
        eng = engines[n % len(engines)]
        return [(r, eng.redeem(r)) for r in requests[n::WORKERS]]

    with ThreadPoolExecutor(WORKERS) as pool:
        return [pair for chunk in pool.map(work, range(WORKERS)) for pair in chunk]


def check_invariants(db: Engine, acknowledged: list[tuple[Redemption, Outcome]]) -> None:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT id, used_qty, held_qty, granted_qty FROM allowances")).all()
        journal = Counter(conn.scalars(text("SELECT entry_id FROM journal")).all())
        stored = dict(conn.execute(text("SELECT entry_id, result FROM journal")).all())
        sums = journal_used_by_allowance(conn)
    for allowance_id, used_qty, held_qty, granted_qty in rows:
        assert used_qty >= 0 and used_qty + held_qty <= granted_qty
        assert sums.get(allowance_id, 0) == used_qty
    for request, outcome in acknowledged:
        assert journal[request.entry_id] == 1
        assert stored[request.entry_id] == outcome.result
    assert all(count == 1 for count in journal.values())


@pytest.mark.parametrize("stored_as", ["rows", "grants"])
def test_64_workers_on_10_hot_holders_never_overdraw(pg_engine: Engine, stored_as: str) -> None:
    """Also when the allowances are still the grants an opening stored: the first groups to touch a
    holder make its row, concurrently, and exactly one row results."""
    pop = seed(pg_engine, families=10, grants=stored_as == "grants")
    terms = StaticTerms(TERMS)
    requests = hot_requests(pop, 1600, random.Random(7))
    with GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as a, \
            GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as b:
        results = run([a, b], requests)
        assert a.stats.groups + b.stats.groups < len(requests)  # grouping happened
    outcomes = Counter(o.result for _, o in results)
    assert outcomes["ok"] > 0 and outcomes["exceeds_allowance"] > 0
    check_invariants(pg_engine, results)
    with pg_engine.connect() as conn:
        total_used = conn.execute(
            text("SELECT sum(used_qty) FROM allowances WHERE product_code = 'sugar'")
        ).scalar()
    assert total_used == sum(r.quantity_qty for r, o in results if o.ok)
    with pg_engine.connect() as conn:
        per_key = conn.execute(
            text("SELECT count(*) FROM allowances WHERE product_code = 'sugar' "
                 "GROUP BY holder_type, holder_id, product_code, period_start")
        ).scalars().all()
    assert set(per_key) == {1} and len(per_key) == 10  # one sugar row per hot family, no duplicate


def test_retries_of_the_same_ids_apply_once(pg_engine: Engine) -> None:
    pop = seed(pg_engine, families=10)
    terms = StaticTerms(TERMS)
    requests = hot_requests(pop, 600, random.Random(11))
    tripled = requests * 3
    random.Random(3).shuffle(tripled)
    with GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as a, \
            GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as b:
        results = run([a, b], tripled)
        by_id: dict[str, set[tuple[str, int | None]]] = {}
        for request, outcome in results:
            by_id.setdefault(request.entry_id, set()).add((outcome.result, outcome.remaining_qty))
        assert all(len(answers) == 1 for answers in by_id.values())  # every retry saw the first answer
        assert sum(not o.replayed for _, o in results) == len(requests)
        check_invariants(pg_engine, results)
        changed = [Redemption(r.entry_id, r.card_serial, r.product_code, r.quantity_qty + 1, r.point_code)
                   for r in requests[:50]]
        refused = run([a, b], changed)
    assert {o.result for _, o in refused} == {"exists_with_different_payload"}
    check_invariants(pg_engine, results)


def test_two_members_at_two_points_draw_one_family_allowance_concurrently(pg_engine: Engine) -> None:
    pop = seed(pg_engine, families=1)
    one, two = pop.member_cards[1]
    requests = [Redemption(str(uuid.uuid4()), card, "sugar", 100, point)
                for _ in range(40) for card, point in ((one, "P1"), (two, "P2"))]
    with GroupCommitEngine(pg_engine, StaticTerms(TERMS), writers=4, clock=lambda: NOW) as eng:
        results = run([eng], requests)
    assert sum(o.ok for _, o in results) == 50  # 5000 granted / 100
    check_invariants(pg_engine, results)


def test_the_same_new_id_racing_in_two_engines_is_applied_once(pg_engine: Engine) -> None:
    """No allowance row serialises these (the card is unknown): the unique entry id does, and the
    losing group is retried and answers from the journal."""
    seed(pg_engine, families=1)
    terms = StaticTerms(TERMS)
    request = Redemption(str(uuid.uuid4()), "NO-SUCH-CARD", "sugar", 100, "P1")
    with GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as a, \
            GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as b:
        results = run([a, b], [request] * WORKERS)
    assert {o.result for _, o in results} == {"card_unknown"}
    assert sum(not o.replayed for _, o in results) == 1
    check_invariants(pg_engine, results)


def test_concurrent_groups_never_sell_more_stock_than_a_point_has(pg_engine: Engine) -> None:
    """Two engines' groups draw sugar at two tracked points at once for 400 families, so no allowance row
    orders them: the point's stock row does. Three trucks in turn, 2 kg to each point, each followed by a
    rush of 300 requests of 100 g: every time each point sells exactly its 2 kg, never more, the rest are
    refused out of stock, and its books never go below zero."""
    pop = seed(pg_engine, families=400)
    terms = StaticTerms(TERMS)
    rng = random.Random(5)
    acknowledged: list[tuple[Redemption, Outcome]] = []
    with GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as a, \
            GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as b:
        ledger = LedgerService(pg_engine, terms, a, clock=lambda: NOW)
        for truck in range(3):
            for point in ("P1", "P2"):
                assert ledger.deliver_stock(str(uuid.uuid4()), point, "sugar", 2000, f"truck {truck}").ok
            requests = [Redemption(str(uuid.uuid4()), pop.family_card[rng.randint(1, 400)], "sugar", 100,
                                   rng.choice(["P1", "P2"])) for _ in range(300)]
            results = run([a, b], requests)
            with pg_engine.connect() as conn:
                books = dict(conn.execute(text("SELECT point_code, delivered_qty - dispensed_qty "
                                               "FROM point_stock WHERE product_code = 'sugar'")).all())
            assert books == {"P1": 0, "P2": 0}
            assert Counter(r.point_code for r, o in results if o.ok) == {"P1": 20, "P2": 20}
            assert Counter(o.result for _, o in results) == {"ok": 40, "point_out_of_stock": 260}
            acknowledged += results
    check_invariants(pg_engine, acknowledged)


def test_pump_posts_racing_redemptions_on_the_same_allowances_lose_no_update(pg_engine: Engine) -> None:
    """Pumps post their holds (200 g reserved, 150 g dispensed) while 64 workers redeem sugar on the same
    10 families: a post and a group change the same allowance row one after the other, never from the
    same stale read, so what every family has used is what its journal says and no reservation is left."""
    pop = seed(pg_engine, families=10)
    terms = StaticTerms(TERMS)
    rng = random.Random(9)
    with GroupCommitEngine(pg_engine, terms, writers=3, clock=lambda: NOW) as eng:
        ledger = LedgerService(pg_engine, terms, eng, hold_ttl_s=600, clock=lambda: NOW)
        holds = [str(uuid.uuid4()) for _ in range(40)]
        for n, hold_id in enumerate(holds):
            assert ledger.hold(hold_id, pop.family_card[n % 10 + 1], "sugar", 200, "P1").ok
        requests = [Redemption(str(uuid.uuid4()), pop.family_card[rng.randint(1, 10)], "sugar", 100, "P1")
                    for _ in range(600)]
        with ThreadPoolExecutor(16) as pool:
            posting = pool.map(lambda hold_id: ledger.post(hold_id, 150), holds)
            results = run([eng], requests)
            posts = list(posting)
    assert all(p.ok and p.quantity_qty == 150 for p in posts)
    assert Counter(o.result for _, o in results).keys() == {"ok", "exceeds_allowance"}
    check_invariants(pg_engine, results)
    with pg_engine.connect() as conn:
        used, held = conn.execute(text("SELECT sum(used_qty), sum(held_qty) FROM allowances "
                                       "WHERE product_code = 'sugar'")).one()
    assert (used, held) == (40 * 150 + 100 * sum(o.ok for _, o in results), 0)


def test_a_writer_outlives_a_database_it_cannot_reach() -> None:
    """While the database cannot be reached callers get the error at once (and retry); once it is
    back the same engine serves them. A writer that died on a failed reconnect answered nothing, ever."""
    name = f"sl_late_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    db = make_engine(url)
    try:
        with GroupCommitEngine(db, StaticTerms(TERMS), writers=2, clock=lambda: NOW) as eng:
            for _ in range(3):  # not there yet: refused, not hung
                with pytest.raises(DBAPIError):
                    eng.redeem(Redemption(str(uuid.uuid4()), "F000001", "sugar", 100, "P1"), timeout_s=10)
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            upgrade(url)
            pop = seed(db, families=1)
            outcome = eng.redeem(Redemption(str(uuid.uuid4()), pop.family_card[1], "sugar", 100, "P1"),
                                 timeout_s=10)
            assert outcome.ok
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
