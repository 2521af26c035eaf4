"""Walk-in sales through the API: a clerk sells at its own point, supervisors read, admins set caps."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from tests.integration.ledger_seed import seed


def _world(engine: Engine) -> int:
    seed(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE products SET walk_in = true, free_price_minor = 2000 WHERE code = 'sugar'"))
        return int(conn.execute(text("SELECT id FROM points WHERE code = 'P1'")).scalar_one())


def _sale(qty: int, point: str = "P1", sale_id: str | None = None) -> dict[str, object]:
    return {"id": sale_id or str(uuid.uuid4()), "product_code": "sugar", "quantity_qty": qty,
            "point_code": point}


def test_sell_at_own_point_cap_and_report(client, auth, engine) -> None:  # type: ignore[no-untyped-def]
    p1 = _world(engine)
    admin, clerk, supervisor = auth("admin"), auth("clerk", point_id=p1), auth("supervisor")

    r = client.put("/api/v1/walk-in/caps/sugar", json={"daily_cap_qty": 1500}, headers=admin)
    assert r.status_code == 200, r.text
    one = {"daily_cap_qty": 1}
    diesel = client.put("/api/v1/walk-in/caps/diesel", json=one, headers=admin)
    assert (diesel.status_code, diesel.json()["error"]) == (409, "not_a_walk_in_product")
    assert client.put("/api/v1/walk-in/caps/nothing", json=one, headers=admin).status_code == 404

    sale = _sale(1000)
    r = client.post("/api/v1/walk-in/sales", json=sale, headers=clerk)
    assert r.status_code == 200, r.text
    assert (r.json()["result"], r.json()["price_minor"], r.json()["remaining_qty"]) == ("ok", 2000, 500)
    again = client.post("/api/v1/walk-in/sales", json=sale, headers=clerk)
    assert again.status_code == 200 and again.json()["replayed"] is True

    elsewhere = client.post("/api/v1/walk-in/sales", json=_sale(1, "P2"), headers=clerk)
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (403, "wrong_point")
    assert client.post("/api/v1/walk-in/sales", json=_sale(1), headers=admin).status_code == 403

    assert client.post("/api/v1/walk-in/sales", json=_sale(500), headers=clerk).status_code == 200
    over = client.post("/api/v1/walk-in/sales", json=_sale(1), headers=clerk)
    assert (over.status_code, over.json()["error"]) == (409, "walk_in_cap_reached")

    today = datetime.now(ZoneInfo("Asia/Damascus")).date()
    params = {"day_from": str(today - timedelta(days=1)), "day_to": str(today + timedelta(days=1))}
    r = client.get("/api/v1/walk-in/report", params=params, headers=supervisor)
    assert r.status_code == 200, r.text
    (day,) = r.json()["days"]
    assert (day["point_code"], day["sales"], day["sold_qty"], day["price_minor"], day["cap_qty"]) \
        == ("P1", 2, 1500, 3000, 1500)
    assert [s["quantity_qty"] for s in r.json()["sales"]] == [1000, 500]
    assert r.json()["sales"][0]["entry_id"] == sale["id"]
    assert client.get("/api/v1/walk-in/report", params=params, headers=clerk).status_code == 403
    backwards = {"day_from": params["day_to"], "day_to": params["day_from"]}
    assert client.get("/api/v1/walk-in/report", params=backwards, headers=supervisor).status_code == 422
