"""A top-up granted in error is withdrawn by a supervisor's reversal of it, on SQLite and PostgreSQL.

Before, reversals took only debits (``entry_not_reversible`` for a top-up): a registrar's mistaken (or
dishonest) 40 L travel top-up stayed drawable by the family it went to. Now a reversal of a top-up's id
takes back what the family has not drawn of it, journalled as a ``withdrawal``; nothing else moves.

Seed (``ledger_seed``): sugar 5000 g granted a calendar month from T0 (4000 g subsidised, 1000 g free); gas
one cylinder every 23 days; the service's clock is NOW (T0 + 2 days).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from quota import ledger_repository
from quota.notify import render
from quota.redemption import Redemption
from tests.integration.ledger_seed import NOW, T0, Population
from tests.integration.test_ledger_reversals import World, reconciled, rid, row


def test_a_mistaken_topup_is_withdrawn_and_the_family_can_no_longer_draw_it(world: World) -> None:
    svc, pop, db = world
    sugar = pop.allowance_of[(1, "sugar")]
    top = svc.topup(rid(), "family", 1, "sugar", 1000, "travel (wrong family)", "user:reg")
    assert top.result == "ok" and row(db, sugar)["granted_qty"] == 6000
    out = svc.reverse(rid(), top.entry_id, "granted to the wrong family", "user:sup")
    assert (out.result, out.quantity_qty, out.price_minor, out.remaining_qty) == ("topup_withdrawn", -1000, 0,
                                                                                   5000)
    after = row(db, sugar)
    assert (after["granted_qty"], after["topup_qty"], after["used_qty"]) == (5000, 0, 0)
    card = pop.family_card[1]
    assert svc.redeem(Redemption(rid(), card, "sugar", 5001, "P1")).result == "exceeds_allowance"
    assert svc.redeem(Redemption(rid(), card, "sugar", 5000, "P1")).result == "ok"
    with db.connect() as conn:
        kinds = conn.execute(text("SELECT kind, quantity_qty, ref_entry_id FROM journal "
                                  "WHERE kind IN ('topup', 'withdrawal') ORDER BY seq")).all()
    assert [tuple(k) for k in kinds] == [("topup", 1000, None), ("withdrawal", -1000, top.entry_id)]
    reconciled(svc, db, NOW)


def test_a_withdrawal_replays_is_partial_and_never_takes_more_than_was_granted(world: World) -> None:
    svc, pop, db = world
    sugar = pop.allowance_of[(2, "sugar")]
    top = svc.topup(rid(), "family", 2, "sugar", 1000, "travel", "user:reg")
    first = rid()
    part = svc.reverse(first, top.entry_id, "only 600 g were due", "user:sup", quantity_qty=400)
    assert (part.result, part.quantity_qty) == ("topup_withdrawn", -400)
    again = svc.reverse(first, top.entry_id, "only 600 g were due", "user:sup", quantity_qty=400)
    assert again == part._replace(replayed=True)
    other = svc.reverse(first, top.entry_id, "only 500 g were due", "user:sup", quantity_qty=500)
    assert other.result == "exists_with_different_payload"
    more = svc.reverse(rid(), top.entry_id, "more", "user:sup", quantity_qty=601)
    assert more.result == "exceeds_reversible"
    assert svc.reverse(rid(), top.entry_id, "the rest", "user:sup").quantity_qty == -600
    assert svc.reverse(rid(), top.entry_id, "once more", "user:sup").result == "already_reversed"
    assert (row(db, sugar)["granted_qty"], row(db, sugar)["topup_qty"]) == (5000, 0)
    reconciled(svc, db, NOW)


def test_only_what_the_family_has_not_drawn_is_withdrawn(world: World) -> None:
    svc, pop, db = world
    sugar = pop.allowance_of[(3, "sugar")]
    top = svc.topup(rid(), "family", 3, "sugar", 1000, "travel", "user:reg")
    assert svc.redeem(Redemption(rid(), pop.family_card[3], "sugar", 5700, "P1")).result == "ok"
    refused = svc.reverse(rid(), top.entry_id, "wrong family", "user:sup")
    assert (refused.result, refused.remaining_qty) == ("exceeds_allowance", 300)
    assert row(db, sugar)["granted_qty"] == 6000  # refused: nothing changed, nothing stored
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal WHERE kind = 'withdrawal'")).scalar_one() == 0
    out = svc.reverse(rid(), top.entry_id, "wrong family: what is left", "user:sup", quantity_qty=300)
    assert out.result == "topup_withdrawn"
    after = row(db, sugar)
    assert (after["granted_qty"], after["used_qty"], after["topup_qty"]) == (5700, 5700, 700)
    assert svc.redeem(Redemption(rid(), pop.family_card[3], "sugar", 1, "P1")).result == "exceeds_allowance"
    reconciled(svc, db, NOW)


def test_a_topup_of_an_ended_window_is_not_withdrawn(world: World) -> None:
    svc, pop, db = world
    top = svc.topup(rid(), "family", 1, "sugar", 500, "travel", "user:reg")
    later = T0 + timedelta(days=31)  # November has ended: its unused top-up ended with it
    assert svc.reverse(rid(), top.entry_id, "late", "user:sup", now=later).result == "period_closed"
    stock_only = svc.reverse(rid(), top.entry_id, "late", "user:sup", now=later, stock_only_if_closed=True)
    assert stock_only.result == "period_closed"  # a top-up moved no stock: nothing to correct there
    assert row(db, pop.allowance_of[(1, "sugar")])["granted_qty"] == 5500


def test_a_rolling_windows_topup_is_withdrawn_while_the_window_runs(world: World) -> None:
    svc, pop, _ = world
    card = pop.family_card[2]
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1")).result == "ok"
    top = svc.topup(rid(), "family", 2, "gas", 1, "second cylinder (wrong family)", "user:reg")
    assert top.result == "ok"
    out = svc.reverse(rid(), top.entry_id, "wrong family", "user:sup", now=NOW + timedelta(days=1))
    assert (out.result, out.remaining_qty) == ("topup_withdrawn", 0)
    assert svc.redeem(Redemption(rid(), card, "gas", 1, "P1")).result != "ok"
    again = svc.topup(rid(), "family", 2, "gas", 1, "second cylinder", "user:reg")
    window_over = NOW + timedelta(days=24)  # the 23-day window ended: its top-up with it
    assert svc.reverse(rid(), again.entry_id, "late", "user:sup", now=window_over).result == "period_closed"


def test_the_family_is_told_and_sees_the_withdrawal(world: World) -> None:
    svc, _, db = world
    top = svc.topup(rid(), "family", 1, "sugar", 500, "travel", "user:reg")
    out = svc.reverse(rid(), top.entry_id, "wrong family", "user:sup")
    draws = svc.family_draws(1)
    assert [(d["kind"], d["quantity_qty"]) for d in draws] == [("withdrawal", -500), ("topup", 500)]
    with db.connect() as conn:
        entry = ledger_repository.find_entries(conn, [out.entry_id])[out.entry_id]
    products = {"sugar": ("سكر", "Sugar", "g", 1000)}
    arabic, english = render(entry, products, {})
    assert english.startswith("top-up withdrawn 0.5 kg Sugar for receipt ")
    assert "remaining 5 kg" in english
    assert arabic.startswith("تم سحب إضافة")


def _topup(client: TestClient, auth: Any) -> str:
    body = {"id": rid(), "holder_type": "family", "holder_id": 1, "product_code": "sugar",
            "quantity_qty": 500, "reason": "travel"}
    r = client.post("/api/v1/topups", json=body, headers=auth(Role.REGISTRAR))
    assert r.status_code == 200, r.text
    return str(body["id"])


def test_withdrawals_over_http(client: TestClient, auth: Any, pop: Population, engine: Engine) -> None:
    top = _topup(client, auth)
    body = {"id": rid(), "ref_entry_id": top, "reason": "granted to the wrong family"}
    assert client.post("/api/v1/reversals", json=body, headers=auth(Role.CLERK)).status_code == 403
    assert client.post("/api/v1/reversals", json=body, headers=auth(Role.REGISTRAR)).status_code == 403
    with engine.connect() as conn:
        p1 = int(conn.execute(text("SELECT id FROM points WHERE code = 'P1'")).scalar_one())
    tied = client.post("/api/v1/reversals", json=body, headers=auth(Role.SUPERVISOR, point_id=p1))
    assert tied.status_code == 403 and tied.json()["error"] == "wrong_point"
    supervisor = auth(Role.SUPERVISOR)
    done = client.post("/api/v1/reversals", json=body, headers=supervisor)
    assert done.status_code == 200, done.text
    answer = done.json()
    assert (answer["result"], answer["quantity_qty"], answer["remaining_qty"]) == \
        ("topup_withdrawn", -500, 5000)
    assert "top-up" in answer["message_en"] and answer["message_ar"]
    replayed = client.post("/api/v1/reversals", json=body, headers=supervisor)
    assert replayed.json()["result"] == "topup_withdrawn"
    quota = client.get(f"/api/v1/cards/{pop.family_card[1]}/quota", headers=auth(Role.CLERK)).json()
    assert next(x for x in quota["lines"] if x["product_code"] == "sugar")["granted_qty"] == 5000

    drawn = _topup(client, auth)
    r = client.post("/api/v1/redemptions", headers=auth(Role.CLERK), json={
        "id": rid(), "card_serial": pop.family_card[1], "product_code": "sugar", "quantity_qty": 5200,
        "point_code": "P1"})
    assert r.status_code == 200 and r.json()["result"] == "ok"
    over = client.post("/api/v1/reversals", headers=supervisor,
                       json={"id": rid(), "ref_entry_id": drawn, "reason": "wrong family"})
    assert over.status_code == 409 and over.json()["error"] == "exceeds_allowance"
    assert over.json()["detail"]["remaining_qty"] == 300 and over.json()["detail"]["message_en"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal WHERE kind = 'withdrawal'")).scalar_one() == 1
