"""The ledger as a point sees it, on SQLite and PostgreSQL: answers, refusals, holds, corrections."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine, text

from quota.ledger_reports import family_draws, quota_for_card, stock_report
from quota.redemption import Redemption, StaticTerms
from tests.integration.ledger_seed import T0, TERMS

NOW = T0 + timedelta(days=2)


def rid() -> str:
    return str(uuid.uuid4())


def used(db: Engine, allowance_id: int) -> tuple[int, int, int]:
    with db.connect() as conn:
        row = conn.execute(text("SELECT used_qty, held_qty, granted_qty FROM allowances WHERE id = :i"),
                           {"i": allowance_id}).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_redeem_answers_remaining_and_price(world) -> None:
    svc, pop, db = world
    out = svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 1500, "P1"))
    assert (out.result, out.quantity_qty, out.remaining_qty, out.price_minor) == ("ok", 1500, 3500, 525)
    assert used(db, pop.allowance_of[(1, "sugar")])[0] == 1500


def test_same_id_replays_and_other_payload_is_refused(world) -> None:
    svc, pop, db = world
    req = Redemption(rid(), pop.family_card[1], "sugar", 1000, "P1")
    first = svc.redeem(req)
    again = svc.redeem(req)
    assert again.replayed and (again.result, again.remaining_qty) == (first.result, first.remaining_qty)
    other = svc.redeem(Redemption(req.entry_id, pop.family_card[1], "sugar", 999, "P1"))
    assert other.result == "exists_with_different_payload"
    assert used(db, pop.allowance_of[(1, "sugar")])[0] == 1000


def test_refusal_is_stored_and_replayed(world) -> None:
    svc, pop, _ = world
    req = Redemption(rid(), pop.family_card[1], "sugar", 5001, "P1")
    assert svc.redeem(req).result == "exceeds_allowance"
    replayed = svc.redeem(req)
    assert replayed.replayed and replayed.result == "exceeds_allowance"


def test_card_and_point_refusals(world) -> None:
    svc, pop, db = world
    assert svc.redeem(Redemption(rid(), "NOPE", "sugar", 1, "P1")).result == "card_unknown"
    with db.begin() as conn:
        conn.execute(text("UPDATE cards SET state = 'lost' WHERE serial = :s"), {"s": pop.family_card[2]})
    assert svc.redeem(Redemption(rid(), pop.family_card[2], "sugar", 1, "P1")).result == "card_blocked"
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 1, "BAKERY")).result \
        == "product_not_served"
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "bread", 1, "BAKERY")).result == "not_eligible"


def test_period_not_yet_open_or_ended_is_not_eligible(world) -> None:
    svc, pop, _ = world
    late = Redemption(rid(), pop.family_card[1], "sugar", 1, "P1", T0 + timedelta(days=30))
    assert svc.redeem(late).result == "not_eligible"


def test_group_resolves_repeated_holder_in_order(world) -> None:
    svc, pop, db = world
    reqs = [Redemption(rid(), pop.family_card[1], "sugar", 2000, "P1") for _ in range(3)]
    results = [o.result for o in svc.redeem_batch(reqs)]
    assert results == ["ok", "ok", "exceeds_allowance"]
    assert used(db, pop.allowance_of[(1, "sugar")])[0] == 4000


def test_members_draw_the_family_allowance_at_two_points_and_the_family_sees_who(world) -> None:
    svc, pop, _ = world
    one, two = pop.member_cards[1]
    assert svc.redeem(Redemption(rid(), one, "sugar", 1000, "P1")).remaining_qty == 4000
    assert svc.redeem(Redemption(rid(), two, "sugar", 3000, "P2")).remaining_qty == 1000
    draws = family_draws(db := world[2], 1)
    assert {(d["card_serial"], d["point_code"], d["quantity_qty"]) for d in draws} == {
        (one, "P1", 1000), (two, "P2", 3000)}
    assert {d["card_holder_type"] for d in draws} == {"person"}
    lines = quota_for_card(db, StaticTerms(TERMS), one, NOW)
    assert lines is not None
    sugar = next(line for line in lines if line.product_code == "sugar")
    assert sugar.remaining_qty == 1000 and sugar.holder_type == "family"


def test_a_member_card_is_shown_the_allowance_it_draws_from(world) -> None:
    """A member with an allowance of their own draws from it, not from the family's: the quota lists that
    one line for the product (before, both were listed, so a clerk saw the family's 5 kg as drawable)."""
    svc, pop, db = world
    one, _ = pop.member_cards[1]
    with db.begin() as conn:
        conn.execute(text("INSERT INTO allowances (id, holder_type, holder_id, product_code, "
                          "rule_version_id, period_start, period_end, base_qty, granted_qty) VALUES "
                          "(100, 'person', 1, 'sugar', 1, :s, :e, 700, 700)"),
                     {"s": T0, "e": T0 + timedelta(days=30)})
    lines = [line for line in quota_for_card(db, StaticTerms(TERMS), one, NOW) or []
             if line.product_code == "sugar"]
    assert [(line.holder_type, line.remaining_qty, line.available_now_qty) for line in lines] == \
        [("person", 700, 700)]
    assert svc.redeem(Redemption(rid(), one, "sugar", 701, "P1")).result == "exceeds_allowance"
    assert svc.redeem(Redemption(rid(), one, "sugar", 700, "P1")).remaining_qty == 0
    family = [line for line in quota_for_card(db, StaticTerms(TERMS), pop.family_card[1], NOW) or []
              if line.product_code == "sugar"]
    assert [(line.holder_type, line.remaining_qty) for line in family] == [("family", 5000)]


def test_fill_cap_gap_and_binding_through_the_engine(world) -> None:
    svc, pop, _ = world
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "diesel", 50_001, "P1")).result == "exceeds_fill_cap"
    assert svc.redeem(Redemption(rid(), card, "diesel", 50_000, "P1")).result == "ok"
    soon = svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1", NOW + timedelta(hours=23)))
    assert soon.result == "too_soon" and soon.possible_at == NOW + timedelta(days=1)
    elsewhere = Redemption(rid(), card, "diesel", 10_000, "P2", NOW + timedelta(days=1))
    assert svc.redeem(elsewhere).result == "point_not_bound"
    assert svc.redeem(Redemption(rid(), card, "diesel", 10_000, "P1", NOW + timedelta(days=1))).ok


def test_rolling_gas_cylinder(world) -> None:
    svc, pop, _ = world
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1")).ok
    before = NOW + timedelta(days=23) - timedelta(milliseconds=1)
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1", before)).result == "exceeds_allowance"
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1", NOW + timedelta(days=23))).ok


def test_stock_out_and_reconciliation(world) -> None:
    svc, pop, db = world
    svc.redeem(Redemption(rid(), pop.family_card[3], "sugar", 500, "P2"))  # before tracking starts
    assert svc.deliver_stock(rid(), "P2", "sugar", 3000, "truck 7").balance_qty == 2500
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 2000, "P2")).ok
    assert svc.redeem(Redemption(rid(), pop.family_card[2], "sugar", 501, "P2")).result \
        == "point_out_of_stock"
    assert svc.redeem(Redemption(rid(), pop.family_card[2], "sugar", 500, "P2")).ok
    report = stock_report(db, "P2", NOW.date(), NOW.date())
    (balance,) = report["balances"]
    assert balance["balance_qty"] == 0 and balance["reconciled"] and balance["dispensed_qty"] == 3000
    assert report["days"] == [{"day": NOW.date().isoformat(), "point_code": "P2", "product_code": "sugar",
                               "tracked": True, "opening_qty": 0, "delivered_qty": 3000,
                               "dispensed_qty": 3000, "closing_qty": 0}]


def test_stock_out_inside_one_batch_counts_what_the_batch_already_dispensed(world) -> None:
    """Two redemptions sent together (one group) against stock that covers only the first: the second is
    refused out of stock, and the point's books never go below zero."""
    svc, pop, db = world
    assert svc.deliver_stock(rid(), "P2", "sugar", 1000, "truck 8").balance_qty == 1000
    out = svc.redeem_batch([Redemption(rid(), pop.family_card[f], "sugar", 600, "P2") for f in (1, 2)])
    assert [o.result for o in out] == ["ok", "point_out_of_stock"]
    assert used(db, pop.allowance_of[(2, "sugar")])[0] == 0
    (balance,) = stock_report(db, "P2", NOW.date(), NOW.date())["balances"]
    assert (balance["balance_qty"], balance["dispensed_qty"], balance["reconciled"]) == (400, 600, True)


def test_hold_post_less_than_reserved_returns_the_rest(world) -> None:
    svc, pop, db = world
    hold_id = rid()
    assert svc.hold(hold_id, pop.family_card[1], "diesel", 40_000, "P1").ok
    assert used(db, pop.allowance_of[(1, "diesel")])[:2] == (0, 40_000)
    posted = svc.post(hold_id, 25_000)
    assert posted.ok and posted.quantity_qty == 25_000 and posted.remaining_qty == 175_000
    assert used(db, pop.allowance_of[(1, "diesel")])[:2] == (25_000, 0)
    assert svc.post(hold_id, 25_000).replayed
    assert svc.post(hold_id, 30_000).result == "exists_with_different_payload"


def test_hold_void_and_expiry(world) -> None:
    svc, pop, db = world
    voided, expiring = rid(), rid()
    svc.hold(voided, pop.family_card[1], "diesel", 30_000, "P1")
    assert svc.void(voided).ok and used(db, pop.allowance_of[(1, "diesel")])[:2] == (0, 0)
    assert svc.post(voided, 1).result == "hold_not_pending"
    svc.hold(expiring, pop.family_card[2], "diesel", 30_000, "P1")
    assert svc.expire_holds(NOW + timedelta(seconds=599)) == 0
    assert svc.expire_holds(NOW + timedelta(seconds=600)) == 1
    assert used(db, pop.allowance_of[(2, "diesel")])[:2] == (0, 0)
    assert svc.post(expiring, 10_000, NOW + timedelta(seconds=700)).result == "hold_expired"


def test_posting_after_expiry_before_the_job_runs_is_refused_and_releases(world) -> None:
    svc, pop, db = world
    hold_id = rid()
    svc.hold(hold_id, pop.family_card[1], "diesel", 30_000, "P1")
    assert svc.post(hold_id, 10_000, NOW + timedelta(seconds=600)).result == "hold_expired"
    assert used(db, pop.allowance_of[(1, "diesel")])[:2] == (0, 0)
    retried = svc.post(hold_id, 10_000, NOW + timedelta(seconds=601))
    assert retried.replayed and retried.result == "hold_expired"
    assert svc.expire_holds(NOW + timedelta(seconds=900)) == 0


def test_reversal_credits_once_with_a_reason(world) -> None:
    svc, pop, db = world
    debit = svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 3000, "P1"))
    out = svc.reverse(rid(), debit.entry_id, "station debited without pumping", "user:sup")
    assert out.ok and out.quantity_qty == -3000 and out.remaining_qty == 5000
    assert svc.reverse(rid(), debit.entry_id, "again", "user:sup").result == "already_reversed"
    with db.connect() as conn:
        kinds = conn.execute(text("SELECT kind, quantity_qty FROM journal ORDER BY seq")).all()
    assert [tuple(k) for k in kinds] == [("redeem", 3000), ("reverse", -3000)]


def test_topup_grows_granted_and_is_capped(world) -> None:
    svc, pop, db = world
    out = svc.topup(rid(), "family", 1, "diesel", 30_000, "travel Damascus-Aleppo", "user:reg", 40_000)
    assert out.ok and used(db, pop.allowance_of[(1, "diesel")])[2] == 230_000
    over = svc.topup(rid(), "family", 1, "diesel", 10_001, "more", "user:reg", 40_000)
    assert over.result == "exceeds_allowance"


def test_journal_sums_equal_used(world) -> None:
    svc, pop, db = world
    for f in (1, 2, 3):
        svc.redeem(Redemption(rid(), pop.family_card[f], "sugar", 700 * f, "P1"))
    svc.topup(rid(), "family", 1, "sugar", 500, "travel", "user:reg")
    hold = rid()
    svc.hold(hold, pop.family_card[2], "diesel", 30_000, "P1")
    svc.post(hold, 12_000)
    debit = svc.redeem(Redemption(rid(), pop.family_card[3], "gas", 1, "P1"))
    svc.redeem(Redemption(rid(), pop.family_card[3], "gas", 1, "P1", NOW + timedelta(days=30)))  # new window
    assert debit.ok
    with db.connect() as conn:
        from quota.ledger_repository import journal_used_by_allowance
        sums = journal_used_by_allowance(conn)
        rows = dict(conn.execute(text("SELECT id, used_qty FROM allowances WHERE used_qty > 0")).all())
    assert sums == rows
