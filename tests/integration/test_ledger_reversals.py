"""Reversals on SQLite and PostgreSQL: the refund follows the price tiers, a debit is reversed in parts, a
wholly reversed fill gives back its gap and station, and a closed period is corrected on the stock side
only — with the journal, the allowances and the point stock still reconciling.

Seed (``ledger_seed``): sugar 4000 g subsidised at 350/kg then 1000 g free at 2000/kg, a calendar month
from T0; gas one cylinder every 23 days (rolling); diesel 200 L a month, 750/L, a fill at most 50 L,
one fill a day, tied to the first station (one change). The service's clock is NOW (T0 + 2 days).
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota import ledger_repository
from quota.domain.decide import AllowanceState, price_charges
from quota.ledger_reports import stock_report
from quota.notify import render
from quota.redemption import Outcome, Redemption
from quota.service import LedgerService, derived_id
from tests.integration.ledger_seed import NOW, SUGAR, T0, Population

World = tuple[LedgerService, Population, Engine]


def rid() -> str:
    return str(uuid.uuid4())


def row(db: Engine, allowance_id: int) -> dict[str, Any]:
    """The allowance row as the ledger reads it (times as aware UTC on both databases)."""
    with db.connect() as conn:
        found = ledger_repository.lock_allowance(conn, allowance_id)
    assert found is not None
    return found._asdict()


def journal(db: Engine) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT kind, result, quantity_qty, price_minor FROM journal ORDER BY seq")).all()]


def balance(db: Engine, point: str, product: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT delivered_qty - dispensed_qty FROM point_stock "
                                     "WHERE point_code = :p AND product_code = :q"),
                                {"p": point, "q": product}).scalar_one())


def reconciled(svc: LedgerService, db: Engine, until: datetime) -> None:
    """Allowances against the journal, the stock against the journal and the deliveries, the seal chain."""
    report = svc.reconcile()
    assert report.ok, report.findings
    stock = stock_report(db, None, T0.date(), until.date())
    assert stock["reconciled"], stock["disagreements"]
    svc.seal(now=until)
    assert svc.verify().ok


def same_moment(a: datetime | None, b: datetime) -> bool:
    return a is not None and a == b


# 1. money ---------------------------------------------------------------------------------------------
def test_a_reversal_refunds_the_top_slice_so_net_money_matches_the_tiers(world: World) -> None:
    svc, pop, db = world
    card = pop.family_card[1]
    a = svc.redeem(Redemption(rid(), card, "sugar", 4000, "P1"))
    b = svc.redeem(Redemption(rid(), card, "sugar", 1000, "P1"))
    assert (a.price_minor, b.price_minor) == (1400, 2000)
    r = svc.reverse(rid(), a.entry_id, "not handed over", "user:sup")
    # used 5000 -> 1000: the slice freed is [1000, 5000) = 3000 g subsidised + 1000 g free
    assert (r.result, r.quantity_qty, r.price_minor) == ("ok", -4000, -(1050 + 2000))
    c = svc.redeem(Redemption(rid(), card, "sugar", 4000, "P1"))
    assert (c.result, c.price_minor) == ("ok", 3050)
    used = row(db, pop.allowance_of[(1, "sugar")])["used_qty"]
    assert used == 5000
    net = a.price_minor + b.price_minor + r.price_minor + c.price_minor
    assert net == 4000 * 350 // 1000 + 1000 * 2000 // 1000 == 3400  # the tier price of what is used
    assert journal(db)[2] == ("reverse", "ok", -4000, -3050)  # the refund, on the reversal entry


def test_partial_reversals_keep_net_money_on_the_tiers_in_any_order(world: World) -> None:
    svc, pop, db = world
    card = pop.family_card[2]
    debits = [svc.redeem(Redemption(rid(), card, "sugar", q, "P1")) for q in (1500, 2000, 1500)]
    paid = sum(d.price_minor for d in debits)
    unused = AllowanceState(0, "family", 2, "sugar", 1, T0, None, base_qty=4000, granted_qty=5000)
    for entry, qty in ((debits[0].entry_id, 500), (debits[2].entry_id, 1500), (debits[0].entry_id, 1000),
                       (debits[1].entry_id, 100)):
        out = svc.reverse(rid(), entry, "part not handed over", "user:sup", quantity_qty=qty)
        assert out.ok, out
        paid += out.price_minor
        used = row(db, pop.allowance_of[(2, "sugar")])["used_qty"]
        assert paid == sum(c.price_minor for c in price_charges(unused, SUGAR, used))  # the tiers' price
    assert used == 1900
    reconciled(svc, db, NOW)


# 2. partial reversals ---------------------------------------------------------------------------------
def test_a_debit_is_reversed_in_parts_until_nothing_is_left(world: World) -> None:
    """RULES.md: a station debits 50 L and pumps 20 L. The supervisor credits back 30 L; the family keeps
    its 20 L, its gap and its station, and need not be debited again."""
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "diesel", 100_000, "tanker", now=NOW - timedelta(hours=1))
    debit = svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 50_000, "P1"))
    assert debit.ok and balance(db, "P1", "diesel") == 50_000
    first_id = rid()
    reason = "pumped 20 L, debited 50 L"
    first = svc.reverse(first_id, debit.entry_id, reason, "user:sup", quantity_qty=30_000)
    assert (first.result, first.quantity_qty, first.price_minor, first.remaining_qty) == \
        ("ok", -30_000, -22_500, 180_000)
    assert balance(db, "P1", "diesel") == 80_000
    allowance = row(db, pop.allowance_of[(1, "diesel")])
    assert allowance["used_qty"] == 20_000 and allowance["home_point_code"] == "P1"
    assert same_moment(allowance["last_redeemed_at"], NOW)  # a partial reversal keeps the fill's gap
    hour = NOW + timedelta(hours=1)
    soon = svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 10_000, "P2", hour))
    assert soon.result == "point_not_bound"
    again = svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 10_000, "P1", hour))
    assert again.result == "too_soon"
    # a retry replays; more than is left is refused and changes nothing; the rest may follow
    assert svc.reverse(first_id, debit.entry_id, reason, "user:sup", quantity_qty=30_000).replayed
    entries = journal(db)
    over = svc.reverse(rid(), debit.entry_id, "more", "user:sup", quantity_qty=20_001)
    assert over.result == "exceeds_reversible"
    assert journal(db) == entries and balance(db, "P1", "diesel") == 80_000
    rest = svc.reverse(rid(), debit.entry_id, "nothing pumped after all", "user:sup")  # default: the rest
    assert (rest.result, rest.quantity_qty, rest.price_minor) == ("ok", -20_000, -15_000)
    assert svc.reverse(rid(), debit.entry_id, "once more", "user:sup").result == "already_reversed"
    assert balance(db, "P1", "diesel") == 100_000
    assert [k[:3] for k in journal(db) if k[1] == "ok"] == [
        ("redeem", "ok", 50_000), ("reverse", "ok", -30_000), ("reverse", "ok", -20_000)]
    reconciled(svc, db, NOW + timedelta(hours=2))


def test_reconcile_and_stock_report_agree_after_partial_reversals_of_many_debits(world: World) -> None:
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "sugar", 20_000, "truck", now=NOW - timedelta(hours=1))
    svc.deliver_stock(rid(), "P2", "diesel", 500_000, "tanker", now=NOW - timedelta(hours=1))
    for family in (1, 2, 3):
        sugar = svc.redeem(Redemption(rid(), pop.family_card[family], "sugar", 1000 * family, "P1"))
        hold = rid()
        assert svc.hold(hold, pop.family_card[family], "diesel", 40_000, "P2").ok
        assert svc.post(hold, 30_000 + family).ok
        assert svc.reverse(rid(), sugar.entry_id, "short bag", "user:sup", quantity_qty=family * 100).ok
        assert svc.reverse(rid(), derived_id(hold, "post"), "meter", "user:sup", quantity_qty=family).ok
    later = NOW + timedelta(days=1)
    assert svc.reverse(rid(), derived_id(hold, "post"), "the rest", "user:sup", now=later).ok
    reconciled(svc, db, later)
    stock = {(b["point_code"], b["product_code"]): b for b in stock_report(db, None, NOW.date(),
                                                                          later.date())["balances"]}
    assert stock[("P1", "sugar")]["dispensed_qty"] == 6000 - 600
    assert stock[("P2", "diesel")]["dispensed_qty"] == 30_001 - 1 + 30_002 - 2


def test_concurrent_reversals_of_one_debit_never_credit_more_than_it(world: World) -> None:
    svc, pop, db = world
    debit = svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 50_000, "P1"))
    twin = rid()
    barrier = threading.Barrier(4)
    results: list[Outcome] = []

    def go(entry_id: str) -> None:
        barrier.wait()
        results.append(svc.reverse(entry_id, debit.entry_id, "double debit", "user:sup", quantity_qty=30_000))

    threads = [threading.Thread(target=go, args=(i,)) for i in (twin, twin, rid(), rid())]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = sorted((o.result, o.replayed) for o in results)
    # one reversal of 30 L applies (its twin replays it); the others find 20 L left
    assert answers.count(("ok", False)) == 1, answers
    assert all(o.result in ("ok", "exceeds_reversible") for o in results), answers
    assert row(db, pop.allowance_of[(1, "diesel")])["used_qty"] == 20_000
    reconciled(svc, db, NOW)


# 3. the fill's gap and station ------------------------------------------------------------------------
def test_a_wholly_reversed_fill_gives_back_its_gap_and_the_station_it_first_bound(world: World) -> None:
    svc, pop, db = world
    card = pop.family_card[1]
    debit = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P1"))
    assert svc.reverse(rid(), debit.entry_id, "station debited without pumping", "user:sup").ok
    allowance = row(db, pop.allowance_of[(1, "diesel")])
    assert allowance["used_qty"] == 0
    assert (allowance["last_redeemed_at"], allowance["home_point_code"]) == (None, None)
    # the family fills at once, at another station: no gap, no binding left by a fill that never was
    other = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P2", NOW + timedelta(minutes=5)))
    assert other.result == "ok"
    assert row(db, pop.allowance_of[(1, "diesel")])["home_point_code"] == "P2"
    reconciled(svc, db, NOW + timedelta(minutes=5))


def test_an_undelivered_advice_gives_back_the_gap_and_the_binding(world: World) -> None:
    svc, pop, _ = world
    d = svc.redeem(Redemption(rid(), pop.family_card[2], "diesel", 20_000, "P1"))
    assert svc.undelivered(d.entry_id, "P1", "device:agent-P1").result == "ok"
    at = NOW + timedelta(minutes=1)
    assert svc.redeem(Redemption(rid(), pop.family_card[2], "diesel", 20_000, "P2", at)).result == "ok"


def test_the_gap_counts_from_the_previous_fill_and_an_earlier_fill_keeps_the_station(world: World) -> None:
    svc, pop, db = world
    card = pop.family_card[1]
    first = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P1"))
    day2 = NOW + timedelta(days=1, hours=1)
    second = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P1", day2))
    assert second.ok
    assert svc.reverse(rid(), second.entry_id, "not pumped", "user:sup", now=day2 + timedelta(minutes=1)).ok
    allowance = row(db, pop.allowance_of[(1, "diesel")])
    assert same_moment(allowance["last_redeemed_at"], NOW) and allowance["home_point_code"] == "P1"
    assert first.ok
    assert svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P2", day2 + timedelta(minutes=2))).result \
        == "point_not_bound"
    third = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P1", day2 + timedelta(minutes=2)))
    assert third.result == "ok"  # a day after the first fill: the reversed second one set no gap
    # reversing an earlier fill while a later one stands changes neither the gap nor the station
    assert svc.reverse(rid(), first.entry_id, "not pumped", "user:sup", now=day2 + timedelta(minutes=3)).ok
    allowance = row(db, pop.allowance_of[(1, "diesel")])
    assert same_moment(allowance["last_redeemed_at"], day2 + timedelta(minutes=2))
    assert allowance["home_point_code"] == "P1"
    reconciled(svc, db, day2 + timedelta(minutes=3))


def test_a_station_chosen_by_a_change_is_not_undone_by_a_reversal(world: World) -> None:
    svc, pop, db = world
    card = pop.family_card[3]
    debit = svc.redeem(Redemption(rid(), card, "diesel", 20_000, "P1"))
    assert svc.rebind(rid(), "family", 3, "diesel", "P2", "user:reg").ok
    assert svc.reverse(rid(), debit.entry_id, "not pumped", "user:sup").ok
    allowance = row(db, pop.allowance_of[(3, "diesel")])
    assert allowance["home_point_code"] == "P2" and allowance["last_redeemed_at"] is None


def test_a_rolling_window_whose_only_fill_is_reversed_is_closed_again(world: World) -> None:
    """Gas, one cylinder every 23 days from the last fill: a fill credited back never started the clock."""
    svc, pop, db = world
    g1 = svc.redeem(Redemption(rid(), pop.family_card[1], "gas", 1, "P1"))
    assert svc.reverse(rid(), g1.entry_id, "cylinder never handed over", "user:sup").ok
    assert row(db, pop.allowance_of[(1, "gas")])["period_end"] is None
    later = NOW + timedelta(days=10)
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "gas", 1, "P1", later)).ok
    allowance = row(db, pop.allowance_of[(1, "gas")])
    assert same_moment(allowance["period_end"], later + timedelta(days=23))
    reconciled(svc, db, later)


# 4. closed periods ------------------------------------------------------------------------------------
def test_a_closed_calendar_periods_debit_is_refused_or_corrected_on_the_stock_side_only(world: World) -> None:
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "sugar", 10_000, "truck", now=NOW - timedelta(hours=1))
    card = pop.family_card[1]
    a = svc.redeem(Redemption(rid(), card, "sugar", 3000, "P1"))
    later = T0 + timedelta(days=35)  # November's row ended at T0 + 30 days
    before = (journal(db), row(db, pop.allowance_of[(1, "sugar")]), balance(db, "P1", "sugar"))
    refused_id = rid()
    refused = svc.reverse(refused_id, a.entry_id, "late correction", "user:sup", now=later)
    assert refused.result == "period_closed"
    assert (journal(db), row(db, pop.allowance_of[(1, "sugar")]), balance(db, "P1", "sugar")) == before
    # the supervisor asks for the stock-only correction, in two parts (the same id may be used again)
    part = svc.reverse(refused_id, a.entry_id, "late correction", "user:sup", now=later, quantity_qty=1000,
                       stock_only_if_closed=True)
    assert (part.result, part.quantity_qty, part.price_minor) == ("stock_credited", -1000, -350)
    rest = svc.reverse(rid(), a.entry_id, "late correction", "user:sup", now=later, stock_only_if_closed=True)
    assert (rest.result, rest.quantity_qty, rest.price_minor) == ("stock_credited", -2000, -700)
    assert svc.reverse(refused_id, a.entry_id, "late correction", "user:sup", now=later, quantity_qty=1000,
                       stock_only_if_closed=True).replayed
    assert svc.reverse(rid(), a.entry_id, "again", "user:sup", now=later,
                       stock_only_if_closed=True).result == "already_reversed"
    # the family's ended allowance is not credited; the point's stock has the goods back
    assert row(db, pop.allowance_of[(1, "sugar")])["used_qty"] == 3000
    assert balance(db, "P1", "sugar") == 10_000
    assert journal(db)[-2:] == [("stock_credit", "ok", -1000, -350), ("stock_credit", "ok", -2000, -700)]
    assert svc.redeem(Redemption(rid(), card, "sugar", 1000, "P1", later)).result == "not_eligible"
    reconciled(svc, db, later)
    with db.connect() as conn:
        entry = dict(conn.execute(text("SELECT * FROM journal WHERE kind = 'stock_credit' ORDER BY seq")
                                  ).mappings().first() or {})
    entry["created_at"] = later
    products = {"sugar": ("سكر", "Sugar", "g", 1000)}
    arabic, english = render(entry, products, {"P1": ("مركز ١", "Outlet 1")})
    assert "not credited back" in english and "refund due 350" in english and "انتهت" in arabic


def test_an_advice_after_a_rolling_restart_corrects_the_stock_and_leaves_the_window(world: World) -> None:
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "gas", 10, now=NOW - timedelta(hours=1))
    g1 = svc.redeem(Redemption(rid(), pop.family_card[1], "gas", 1, "P1"))
    g2 = svc.redeem(Redemption(rid(), pop.family_card[1], "gas", 1, "P1", NOW + timedelta(days=24)))
    assert g1.ok and g2.ok
    at = NOW + timedelta(days=24, minutes=1)
    supervisor = svc.reverse(rid(), g1.entry_id, "station debited, never handed over", "user:sup", now=at)
    assert supervisor.result == "period_closed"
    svc.advice_max_age = None  # a deployment taking advice at any age (CARD_UNDELIVERED_ADVICE_MAX_HOURS=0)
    advice = svc.undelivered(g1.entry_id, "P1", "device:agent-P1", now=at)
    assert (advice.result, advice.quantity_qty, advice.price_minor) == ("stock_credited", -1, -11_500)
    assert svc.undelivered(g1.entry_id, "P1", "device:agent-P1", now=at).replayed
    assert svc.reverse(rid(), g1.entry_id, "again", "user:sup", now=at).result == "already_reversed"
    assert balance(db, "P1", "gas") == 9  # g2 only
    assert row(db, pop.allowance_of[(1, "gas")])["used_qty"] == 1  # the new window keeps g2
    reconciled(svc, db, at)


def test_a_rolling_window_that_ended_is_closed_even_before_the_next_fill(world: World) -> None:
    svc, pop, db = world
    g1 = svc.redeem(Redemption(rid(), pop.family_card[2], "gas", 1, "P1"))
    out = svc.reverse(rid(), g1.entry_id, "late", "user:sup", now=NOW + timedelta(days=23, minutes=1))
    assert out.result == "period_closed"
    assert row(db, pop.allowance_of[(2, "gas")])["used_qty"] == 1


# minor ------------------------------------------------------------------------------------------------
def test_an_unknown_entry_is_not_found_and_an_empty_post_is_not_reversible(world: World) -> None:
    svc, pop, db = world
    assert svc.reverse(rid(), rid(), "no such debit", "user:sup").result == "entry_not_found"
    hold = rid()
    assert svc.hold(hold, pop.family_card[1], "diesel", 20_000, "P1").ok
    assert svc.post(hold, 0).ok
    before = journal(db)
    out = svc.reverse(rid(), derived_id(hold, "post"), "nothing to reverse", "user:sup")
    assert (out.result, out.quantity_qty) == ("entry_not_reversible", 0)
    assert svc.reverse(rid(), hold, "a hold", "user:sup").result == "entry_not_reversible"
    refused = svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 999_999, "P1"))
    assert svc.reverse(rid(), refused.entry_id, "a refusal", "user:sup").result == "entry_not_reversible"
    assert journal(db)[len(before) - 1:] == [before[-1], ("redeem", "exceeds_allowance", 0, 0)]


# over HTTP --------------------------------------------------------------------------------------------
def _debit(client: TestClient, auth: Any, pop: Population, product: str, qty: int) -> str:
    body = {"id": rid(), "card_serial": pop.family_card[1], "product_code": product, "quantity_qty": qty,
            "point_code": "P1"}
    r = client.post("/api/v1/redemptions", json=body, headers=auth(Role.CLERK))
    assert r.status_code == 200, r.text
    return str(body["id"])


def test_reversals_over_http(client: TestClient, auth: Any, pop: Population, app: Any) -> None:
    supervisor = auth(Role.SUPERVISOR)
    debit = _debit(client, auth, pop, "diesel", 50_000)

    def reverse(**kw: Any) -> Any:
        body = {"id": rid(), "ref_entry_id": debit, "reason": "pumped 20 L, debited 50 L", **kw}
        return client.post("/api/v1/reversals", json=body, headers=supervisor)

    part = reverse(quantity_qty=30_000)
    assert part.status_code == 200
    assert (part.json()["result"], part.json()["quantity_qty"], part.json()["price_minor"]) == \
        ("ok", -30_000, -22_500)
    assert part.json()["message_en"] and part.json()["message_ar"]
    over = reverse(quantity_qty=20_001)
    assert over.status_code == 409 and over.json()["error"] == "exceeds_reversible"
    assert over.json()["detail"]["message_en"] and over.json()["detail"]["message_ar"]
    assert reverse(quantity_qty=0).status_code == 422
    assert reverse().json()["quantity_qty"] == -20_000
    again = reverse()
    assert again.status_code == 409 and again.json()["error"] == "already_reversed"
    missing = client.post("/api/v1/reversals", json={"id": rid(), "ref_entry_id": rid(), "reason": "who?"},
                          headers=supervisor)
    assert missing.status_code == 404 and missing.json()["error"] == "entry_not_found"
    assert set(missing.json()) == {"error", "detail"} and missing.json()["detail"]["message_ar"]

    sugar = _debit(client, auth, pop, "sugar", 3000)
    app.state.ledger.clock = lambda: T0 + timedelta(days=35)  # November has ended
    body = {"id": rid(), "ref_entry_id": sugar, "reason": "late correction"}
    closed = client.post("/api/v1/reversals", json=body, headers=supervisor)
    assert closed.status_code == 409 and closed.json()["error"] == "period_closed"
    assert "stock_only" in closed.json()["detail"]["message_en"]
    stock = client.post("/api/v1/reversals", json={**body, "if_period_closed": "stock_only"},
                        headers=supervisor)
    assert stock.status_code == 200
    assert (stock.json()["result"], stock.json()["quantity_qty"], stock.json()["price_minor"]) == \
        ("stock_credited", -3000, -1050)
    bad = client.post("/api/v1/reversals", json={**body, "id": rid(), "if_period_closed": "credit"},
                      headers=supervisor)
    assert bad.status_code == 422


def test_undelivered_advice_is_taken_only_within_its_time_limit(world: World) -> None:
    """A station's agent could hand goods over and then advise that it did not, at leisure: advice is
    taken for 72 hours after the debit (the offline certificates' validity); later it is refused,
    changes nothing, and the agent reports a conflict for a supervisor, who may still reverse."""
    svc, pop, db = world
    card = pop.family_card[1]
    late = svc.redeem(Redemption(rid(), card, "sugar", 1000, "P1"))
    on_time = svc.redeem(Redemption(rid(), card, "sugar", 1000, "P1"))
    used = row(db, pop.allowance_of[(1, "sugar")])["used_qty"]
    refused = svc.undelivered(late.entry_id, "P1", "device:agent-P1", now=NOW + timedelta(hours=73))
    assert refused.result == "advice_too_late"
    assert row(db, pop.allowance_of[(1, "sugar")])["used_qty"] == used  # nothing changed
    ok = svc.undelivered(on_time.entry_id, "P1", "device:agent-P1", now=NOW + timedelta(hours=71))
    assert ok.result == "ok" and row(db, pop.allowance_of[(1, "sugar")])["used_qty"] == used - 1000
    assert svc.reverse(rid(), late.entry_id, "checked with the family", "user:sup",
                       now=NOW + timedelta(hours=74)).ok
