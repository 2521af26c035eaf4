"""A caller's batch is one submission: answered together and in order, never split across groups."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine

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
