"""Explain tells the ledger's story (the audit's items 3, 4, 5 and 9), on SQLite and PostgreSQL.

Each test opens periods as the worker does (``quota.opening.open_due``), asks explain, then lets the
ledger answer (a redemption through ``LedgerService``, or the quota view a card's holder sees) and
compares: the allowance explain shows is the one the ledger serves, on the entry of the rule version
that opened it; its remaining quantity and the price of the next draw are the ledger's; an ended
calendar period is not shown as drawable; a family excluded since the period began still sees the
allowance the ledger serves, judged as of the period's first day, with a note on today's outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, update
from sqlalchemy.orm import Session, sessionmaker

from card_backend.auth.principal import Role
from card_backend.config import Settings
from card_backend.family.models import Exclusion
from card_backend.rules import service as rules_service
from card_backend.vehicle.models import Vehicle
from quota.opening import open_due
from quota.redemption import Redemption
from quota.service import LedgerService
from tests.integration.rules_seed import running_ledger, seed_world

NOV1 = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)
NOV18 = datetime(2026, 11, 18, 9, tzinfo=UTC)
DEC1 = datetime(2026, 12, 1, 8, tzinfo=UTC)


@pytest.fixture
def settings(engine: Engine) -> Settings:
    """The deployment's calendar in UTC, as the openings below (``open_due``'s default)."""
    return Settings(database_url=str(engine.url), jwt_secret="test-secret-" + "x" * 40, log_json=True,
                    timezone="UTC")


@pytest.fixture
def ledger(engine: Engine, session_factory: sessionmaker[Session]) -> Iterator[LedgerService]:
    with session_factory.begin() as s:
        seed_world(s, [("PUMP", "fuel_station", ["gasoline", "sugar", "rice", "tea"])],
                   [(t, h) for t in ("vehicle", "family") for h in (1, 2, 3)])
    with running_ledger(engine, NOV18) as service:
        yield service


def opened(factory: sessionmaker[Session], at: datetime) -> None:
    with factory.begin() as s:
        assert open_due(s, at) is not None


def explain(factory: sessionmaker[Session], settings: Settings, holder_type: str, holder_id: int,
            at: datetime) -> dict[str, dict[str, Any]]:
    with factory() as s:
        return {e["rule"]: e for e in rules_service.explain(s, settings, holder_type, holder_id, at, None)}


def serving(entries: dict[str, dict[str, Any]], product: str) -> list[dict[str, Any]]:
    return [e for e in entries.values() if e["product"] == product and e.get("serving")]


def redeem(
    ledger: LedgerService, serial: str, product: str, qty: int, at: datetime
) -> tuple[str, int | None, int]:
    out = ledger.redeem(Redemption(str(uuid.uuid4()), serial, product, qty, "PUMP", at))
    return out.result, out.remaining_qty, out.price_minor


def quota_line(ledger: LedgerService, serial: str, product: str, at: datetime) -> Any:
    lines = [q for q in ledger.quota_for_card(serial, at) or [] if q.product_code == product]
    assert len(lines) <= 1
    return lines[0] if lines else None


def test_the_allowance_is_shown_on_the_version_that_opened_it(
    ledger: LedgerService, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """Item 4: car 2 opened its window as a family's second car (free price); its family's first car
    is sold, so today the subsidised rule matches it. The ledger still serves the second-car window."""
    opened(session_factory, NOV18)
    assert redeem(ledger, "V000002", "gasoline", 10_000, NOV18) == ("ok", 10_000, 20_000)
    with session_factory.begin() as s:  # car 1 now belongs to family 2 (owner person 3)
        s.execute(update(Vehicle).where(Vehicle.id == 1).values(owner_person_id=3))
    at = NOV18 + timedelta(days=1)
    entries = explain(session_factory, settings, "vehicle", 2, at)
    [second] = serving(entries, "gasoline")
    assert second["rule"] == "gasoline_second_car" and second["applies"] is True
    assert second["allowance"]["rule_version_id"] == second["rule_version_id"]
    assert second["tiers"] == [{"name": "free", "price_minor": 2000, "qty": 20_000}]
    rest = second["allowance"]["remaining_by_tier"]
    assert rest == [{"tier": "free", "qty": 10_000, "price_minor": 20_000}]
    assert "served_until_it_ends" in [n["code"] for n in second["notes"]]
    private = entries["gasoline_private"]
    assert private["matched"] is True and private["applies"] is False and "allowance" not in private
    assert private["served_by"]["rule"] == "gasoline_second_car"
    assert all(n["ar"] and n["en"] for n in private["notes"])
    # the ledger: the rest of the second-car window, at the free price explain named
    assert redeem(ledger, "V000002", "gasoline", 10_000, at) == ("ok", 0, 20_000)


def test_an_ended_rolling_window_is_shown_restarted_as_the_ledger_restarts_it(
    ledger: LedgerService, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """Item 5 (a): 8 days after a fill the 7-day window has ended; the next fill starts a new one."""
    opened(session_factory, NOV18)
    assert redeem(ledger, "V000001", "gasoline", 20_000, NOV18)[0] == "ok"
    later = NOV18 + timedelta(days=8)
    [private] = serving(explain(session_factory, settings, "vehicle", 1, later), "gasoline")
    meters = private["allowance"]
    line = quota_line(ledger, "V000001", "gasoline", later)
    assert (meters["used_qty"], meters["remaining_qty"], meters["period_end"]) == (0, 40_000, None)
    assert (line.used_qty, line.remaining_qty, line.available_now_qty, line.period_end) == (
        meters["used_qty"], meters["remaining_qty"], meters["available_now_qty"], meters["period_end"])
    assert line.available_now_qty == 20_000  # one fill: the 20 L fill cap, though 40 L remain
    assert meters["rolling"] == {"days": 7, "running": False}
    first = meters["remaining_by_tier"][0]
    assert first == {"tier": "subsidised", "qty": 20_000, "price_minor": 15_000}
    assert redeem(ledger, "V000001", "gasoline", 20_000, later) == (
        "ok", meters["remaining_qty"] - 20_000, first["price_minor"])


def test_a_top_up_is_priced_in_the_first_tier_as_the_ledger_prices_it(
    ledger: LedgerService, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """Item 5 (b): base + top-up are sold at the subsidised price; explain's tiers say so."""
    opened(session_factory, NOV18)
    assert redeem(ledger, "V000001", "gasoline", 20_000, NOV18)[0] == "ok"
    at = NOV18 + timedelta(hours=1)
    topup = ledger.topup(str(uuid.uuid4()), "vehicle", 1, "gasoline", 5_000, "travel", "admin", now=at)
    assert topup.result == "ok"
    [private] = serving(explain(session_factory, settings, "vehicle", 1, at), "gasoline")
    assert [t["qty"] for t in private["tiers"]] == [25_000, 20_000]  # base + top-up, then the free slice
    meters = private["allowance"]
    assert (meters["granted_qty"], meters["used_qty"], meters["topup_qty"]) == (45_000, 20_000, 5_000)
    assert meters["remaining_by_tier"] == [{"tier": "subsidised", "qty": 5_000, "price_minor": 3_750},
                                           {"tier": "free", "qty": 20_000, "price_minor": 40_000}]
    assert redeem(ledger, "V000001", "gasoline", 5_000, at + timedelta(minutes=1)) == ("ok", 20_000, 3_750)


def test_between_two_calendar_periods_nothing_is_drawable_until_the_next_is_opened(
    ledger: LedgerService, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """Item 9: November has ended and December is not opened: explain shows no allowance and says
    the period is not opened; once it is, explain shows December's (with November's carry-over)."""
    opened(session_factory, NOV1)
    sugar = explain(session_factory, settings, "family", 1, DEC1)["sugar_family"]
    assert sugar["serving"] is False and "allowance" not in sugar
    assert sugar["period_opened"] is False and [n["code"] for n in sugar["notes"]] == ["period_not_opened"]
    assert "2026-12-01" in sugar["notes"][0]["ar"] and "2026-12-01" in sugar["notes"][0]["en"]
    assert quota_line(ledger, "F000001", "sugar", DEC1) is None
    assert redeem(ledger, "F000001", "sugar", 500, DEC1)[0] == "not_eligible"

    opened(session_factory, DEC1)
    sugar = explain(session_factory, settings, "family", 1, DEC1)["sugar_family"]
    meters = sugar["allowance"]
    assert sugar["serving"] is True and "notes" not in sugar
    assert meters["period_start"].startswith("2026-12-01") and meters["carried_qty"] == 1_000
    assert sugar["tiers"] == [{"name": "subsidised", "price_minor": 350, "qty": 3_000}]  # 2 kg + 1 kg carried
    assert meters["remaining_qty"] == quota_line(ledger, "F000001", "sugar", DEC1).remaining_qty == 3_000
    [slice_] = meters["remaining_by_tier"]
    assert redeem(ledger, "F000001", "sugar", 3_000, DEC1) == ("ok", 0, slice_["price_minor"])


def test_an_excluded_family_sees_the_allowance_the_ledger_still_serves(
    ledger: LedgerService, session_factory: sessionmaker[Session], client: TestClient, auth: Any
) -> None:
    """Item 3: the family is excluded from 10 November; November's sugar was opened on the 1st, judged
    on the registry of that day, and stays redeemable. Explain (here through the API) shows it, says
    which day judged it and that judged today the rule would not apply."""
    opened(session_factory, NOV1)
    with session_factory.begin() as s:
        s.execute(insert(Exclusion), [{"holder_type": "family", "holder_id": 1, "reason": "large_taxpayer",
                                       "since": date(2026, 11, 10)}])
    r = client.get("/api/v1/holders/family/1/explain", params={"at": NOV18.isoformat()},
                   headers=auth(Role.SUPERVISOR))
    assert r.status_code == 200, r.text
    sugar = {e["rule"]: e for e in r.json()}["sugar_family"]
    assert sugar["serving"] is True and sugar["applies"] is True and sugar["judged_on"] == "2026-11-01"
    assert next(p for p in sugar["predicates"] if p["name"] == "excluded")["passed"] is True
    assert sugar["today"] == {"judged_on": "2026-11-18", "matched": False, "applies": False,
                              "granted_qty": 0, "failed": ["excluded"]}
    [note] = sugar["notes"]
    assert note["code"] == "changed_since_period_start" and "2026-11-01" in note["ar"] and note["en"]
    meters = sugar["allowance"]
    line = quota_line(ledger, "F000001", "sugar", NOV18)
    assert (meters["granted_qty"], meters["remaining_qty"]) == (line.granted_qty, line.remaining_qty) == (
        2_000, 2_000)
    assert redeem(ledger, "F000001", "sugar", 1_000, NOV18) == ("ok", 1_000, 350)
