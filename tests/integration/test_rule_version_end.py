"""A new version with an ``effective_to`` ends a rule: the older versions do not come back after it.

The version of a rule on a day is its newest version begun by then (``effective_from`` on or before
the day), in force only while its own ``effective_to`` covers the day. Before, the rule in force was
"the highest version covering the day", so ``PUT /api/v1/rules/sugar_family`` with ``effective_to:
2026-11-30`` looked like it ended the rule, but from 1 December version 1 (open-ended) was in force
again: simulate counted it, the worker opened December's sugar, and a rolling rule ended that way
went on granting (the refresh of an ended rolling product was never reached).

Through the rules API (listing, simulate, explain), the worker's ``open_due`` and the ledger service,
on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from quota.opening import OpeningReport, open_due
from quota.redemption import Outcome, Redemption
from quota.service import LedgerService
from tests.integration.rules_seed import (
    allowance_rows,
    demo_ruleset,
    running_ledger,
    seed_world,
)

Auth = Callable[..., dict[str, str]]
NOV = datetime(2026, 11, 18, 12, tzinfo=UTC)
DEC = datetime(2026, 12, 5, 12, tzinfo=UTC)
JAN = datetime(2027, 1, 5, 12, tzinfo=UTC)
FAMILIES = (1, 2, 3, 4)  # rules_seed: sizes 2, 5, 3 and 8; family 5 is excluded


@pytest.fixture
def ledger(engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[LedgerService]:
    with session_factory.begin() as s:
        seed_world(s, [("OUTLET", "state_outlet", ["sugar", "gas_cylinder"])],
                   [("family", f) for f in FAMILIES])
    with running_ledger(engine, NOV) as service:
        yield service


def worker(factory: sessionmaker[Session], at: datetime) -> OpeningReport | None:
    with factory.begin() as s:
        return open_due(s, at)


def opened(report: OpeningReport | None, product: str) -> list[tuple[str, int, int]]:
    """(rule code, rule version id, rows) of what an opening wrote for the product."""
    return [(o.rule_code, o.rule_version_id, o.rows) for o in (report.opened if report else [])
            if o.product == product]


def draw(ledger: LedgerService, family: int, product: str, qty: int, at: datetime) -> Outcome:
    return ledger.redeem(Redemption(str(uuid.uuid4()), f"F{family:06d}", product, qty, "OUTLET", at))


def put_version(client: TestClient, admin: dict[str, str], code: str, **changes: Any) -> dict[str, Any]:
    """``PUT /api/v1/rules/{code}``: the demo rule with ``changes``, stored as its next version."""
    body = next(r for r in demo_ruleset().rules if r.code == code).model_dump(mode="json")
    r = client.put(f"/api/v1/rules/{code}", json={**body, **changes}, headers=admin)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def simulated(client: TestClient, auditor: dict[str, str], product: str, at: datetime) -> int:
    """The base quantity simulate hands out of the product at ``at`` (the rules in force then)."""
    r = client.post("/api/v1/rules/simulate", json={"at": at.isoformat()}, headers=auditor)
    assert r.status_code == 200, r.text
    return sum(x["base_qty"] for x in r.json()["lines"] if x["product"] == product)


def rows_from(factory: sessionmaker[Session], product: str, since: date) -> list[dict[str, Any]]:
    with factory() as s:
        return [r for r in allowance_rows(s, "family", list(FAMILIES), product)
                if r["period_start"].date() >= since]


def test_a_version_with_an_end_date_ends_the_rule_after_it(
    ledger: LedgerService, client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    ended = put_version(client, admin, "sugar_family", effective_to="2026-11-30")
    # the listing shows the rule's newest version: version 2, ending on 30 November
    listed = {r["code"]: r for r in client.get("/api/v1/rules", headers=auditor).json()}
    assert (listed["sugar_family"]["version"], listed["sugar_family"]["effective_to"]) == (2, "2026-11-30")
    assert listed["rice_family"]["effective_to"] is None
    # in force until its end date, gone after it
    assert simulated(client, auditor, "sugar", NOV) == 2000 + 4000 + 3000 + 4000
    assert simulated(client, auditor, "sugar", DEC) == 0
    assert simulated(client, auditor, "rice", DEC) > 0
    r = client.get("/api/v1/holders/family/1/explain", params={"at": DEC.isoformat()}, headers=auditor)
    assert r.status_code == 200, r.text
    assert [e for e in r.json() if e["rule"] == "sugar_family" and e.get("applies")] == []
    # the worker opens November's sugar under version 2 and nothing of it on 1 December
    november = worker(session_factory, NOV)
    assert [(code, vid) for code, vid, _ in opened(november, "sugar")] == [("sugar_family", ended["id"])]
    december = worker(session_factory, datetime(2026, 12, 1, 0, 10, tzinfo=UTC))
    assert opened(december, "sugar") == []
    assert [code for code, _, n in opened(december, "rice") if n] == ["rice_family"]  # the month did open
    assert rows_from(session_factory, "sugar", date(2026, 12, 1)) == []
    assert draw(ledger, 1, "sugar", 1000, NOV).result == "ok"  # November's sugar
    assert draw(ledger, 1, "sugar", 1000, DEC).result == "not_eligible"


def test_an_ended_rule_restarted_by_a_later_version_is_off_in_between(
    ledger: LedgerService, client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    """A version scheduled ahead hides nothing before it begins: ending sugar on 30 November and
    bringing it back, halved, from 1 January leaves December without sugar and January at the new
    amount."""
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    put_version(client, admin, "sugar_family", effective_to="2026-11-30")
    halved = put_version(client, admin, "sugar_family", effective_from="2027-01-01",
                         amount={"per_member_qty": 500, "cap_qty": 4000})
    listed = {r["code"]: r for r in client.get("/api/v1/rules", headers=auditor).json()}
    assert (listed["sugar_family"]["version"], listed["sugar_family"]["effective_from"]) == (3, "2027-01-01")
    assert simulated(client, auditor, "sugar", NOV) == 2000 + 4000 + 3000 + 4000  # version 2, not ended yet
    assert simulated(client, auditor, "sugar", DEC) == 0
    assert simulated(client, auditor, "sugar", JAN) == 1000 + 2500 + 1500 + 4000
    assert opened(worker(session_factory, datetime(2026, 12, 1, 0, 10, tzinfo=UTC)), "sugar") == []
    january = worker(session_factory, datetime(2027, 1, 1, 0, 10, tzinfo=UTC))
    assert [(code, vid) for code, vid, _ in opened(january, "sugar")] == [("sugar_family", halved["id"])]
    january_rows = rows_from(session_factory, "sugar", date(2027, 1, 1))
    assert {r["holder_id"]: r["granted_qty"] for r in january_rows} == {1: 1000, 2: 2500, 3: 1500, 4: 4000}
    assert draw(ledger, 2, "sugar", 2500, JAN).result == "ok"


def test_a_rolling_rule_ended_by_a_version_stops_granting_after_the_running_window(
    ledger: LedgerService, client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    """Gas every 23 days, ended on 30 November by a new version: the family that drew on 18 November
    keeps its window (to 11 December) and gets no new one after it; a family that never drew gets
    nothing from December."""
    admin, auditor = auth(Role.ADMIN), auth(Role.AUDITOR)
    drew = datetime(2026, 11, 18, 10, tzinfo=UTC)
    worker(session_factory, datetime(2026, 11, 18, 9, tzinfo=UTC))
    assert draw(ledger, 1, "gas_cylinder", 1, drew).ok  # a 23-day window, to 11 December 10:00
    put_version(client, admin, "gas_cylinder_family", effective_to="2026-11-30")
    for day in (datetime(2026, 11, 25), datetime(2026, 12, 1), datetime(2026, 12, 6), datetime(2026, 12, 12)):
        worker(session_factory, day.replace(hour=0, minute=5, tzinfo=UTC))  # the worker's daily rounds
    assert simulated(client, auditor, "gas_cylinder", DEC) == 0
    # the running window keeps what it was opened with, then ends: no next cylinder
    line = next(q for q in ledger.quota_for_card("F000001", DEC) or [] if q.product_code == "gas_cylinder")
    assert (line.used_qty, line.remaining_qty) == (1, 0)
    assert line.period_end is not None and line.period_end.astimezone(UTC) == drew + timedelta(days=23)
    after = drew + timedelta(days=24)
    assert draw(ledger, 1, "gas_cylinder", 1, after).result == "not_eligible"
    lines = ledger.quota_for_card("F000001", after) or []
    assert [q for q in lines if q.product_code == "gas_cylinder"] == []
    # a family with no running window gets nothing from December
    assert draw(ledger, 2, "gas_cylinder", 1, DEC).result == "not_eligible"


def test_an_ended_rolling_product_is_left_alone_once_its_last_windows_are_placed(
    ledger: LedgerService, client: TestClient, auth: Auth, session_factory: sessionmaker[Session]
) -> None:
    """The worker refreshed an ended rolling product every day for ever, reading all its rows: it stops
    once a refresh after the end found nothing to write, and a rule of the product coming back makes
    it live again."""
    admin = auth(Role.ADMIN)
    worker(session_factory, datetime(2026, 11, 18, 9, tzinfo=UTC))
    assert draw(ledger, 1, "gas_cylinder", 1, datetime(2026, 11, 18, 10, tzinfo=UTC)).ok
    put_version(client, admin, "gas_cylinder_family", effective_to="2026-11-30")
    rounds = {day: worker(session_factory, datetime(2026, 12, day, 0, 5, tzinfo=UTC)) for day in range(1, 11)}
    refreshed = [day for day, report in rounds.items() if opened(report, "gas_cylinder")]
    assert refreshed == [1, 2]  # the zero renewals placed, then a refresh that changed nothing
    assert draw(ledger, 2, "gas_cylinder", 1, datetime(2026, 12, 10, 12, tzinfo=UTC)).result == "not_eligible"
    put_version(client, admin, "gas_cylinder_family", effective_from="2026-12-11", effective_to=None)
    back = worker(session_factory, datetime(2026, 12, 11, 0, 5, tzinfo=UTC))
    assert opened(back, "gas_cylinder")
    assert draw(ledger, 2, "gas_cylinder", 1, datetime(2026, 12, 11, 12, tzinfo=UTC)).ok
