"""A caller's batch is one submission: answered together and in order, never split across groups."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from quota.engine import GroupCommitEngine
from quota.redemption import Redemption, StaticTerms
from tests.integration.ledger_seed import T0, TERMS, seed

NOW = T0 + timedelta(days=2)


def test_a_batch_is_answered_in_order_beside_single_requests(engine: Engine) -> None:
    pop = seed(engine, families=3, sugar_qty=1000)  # 1 kg at the subsidised tier + 1 kg free
    card = pop.family_card[1]
    batch = [Redemption(str(uuid.uuid4()), card, "sugar", 400, "P1") for _ in range(6)]  # 2.4 kg of 2
    with GroupCommitEngine(engine, StaticTerms(TERMS), max_items=4, clock=lambda: NOW) as eng:
        single = eng.submit(Redemption(str(uuid.uuid4()), pop.family_card[2], "sugar", 100, "P1"))
        outcomes = eng.redeem_many(batch)
        assert single.result(10).ok
        assert eng.redeem_many([]) == []
    assert [o.entry_id for o in outcomes] == [r.entry_id for r in batch]
    assert [o.result for o in outcomes] == ["ok"] * 5 + ["exceeds_allowance"]  # serial order holds
    assert [o.remaining_qty for o in outcomes[:5]] == [1600, 1200, 800, 400, 0]


def test_a_request_that_cannot_be_decided_fails_alone_and_its_group_commits(engine: Engine) -> None:
    """A request whose terms cannot be built (here: a rule version the terms source lacks; in service,
    a bug) used to fail its whole group: every other caller's redemption was refused with its error.
    Now it fails alone, is written nowhere, and the rest of the group is committed."""
    pop = seed(engine, families=3)
    no_gas = StaticTerms([t for t in TERMS if t.product_code != "gas"])
    with GroupCommitEngine(engine, no_gas, max_wait_ms=300, writers=1, clock=lambda: NOW) as eng:
        poisoned = eng.submit(Redemption(str(uuid.uuid4()), pop.family_card[1], "gas", 1, "P1"))
        fine = [eng.submit(Redemption(str(uuid.uuid4()), pop.family_card[f], "sugar", 100, "P1"))
                for f in (2, 3)]
        assert [f.result(10).result for f in fine] == ["ok", "ok"]
        with pytest.raises(KeyError):
            poisoned.result(10)
        stats = eng.stats
    assert stats.groups == 1  # the three were one group
    with engine.connect() as conn:
        journalled = conn.execute(text("SELECT product_code FROM journal ORDER BY seq")).scalars().all()
    assert journalled == ["sugar", "sugar"]
