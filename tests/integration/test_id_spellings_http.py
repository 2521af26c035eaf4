"""A UUID id written in another spelling (upper case, as Swift's ``uuidString`` writes it, or without
hyphens) is the same id in a path as in a body, on SQLite and PostgreSQL.

Bodies read ids as UUIDs and store them in one form; the hold and advice paths used the text as sent.
Before, an upper-case advice for an applied debit answered ``voided`` ("never debited") and credited
nothing back; an advice for a debit not yet arrived voided another spelling, so the late debit was
applied; and a pump's post answered 404 ``hold_unknown`` for its own hold (from an audit with probes).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from card_backend.auth.principal import Role
from tests.integration.ledger_seed import Population


def _used(engine: Engine, product: str, family: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT used_qty FROM allowances WHERE holder_type = 'family' "
                                     "AND holder_id = :f AND product_code = :p"),
                                {"f": family, "p": product}).scalar_one())


def test_paths_read_ids_as_the_bodies_do(client: TestClient, auth: Any, pop: Population,
                                         engine: Engine) -> None:
    r = client.post("/api/v1/points/P1/devices", json={"name": "agent-P1"}, headers=auth(Role.REGISTRAR))
    agent = {"Authorization": f"Bearer {r.json()['token']}"}
    debit_id = str(uuid.uuid4()).upper()
    debit = {"id": debit_id, "card_serial": pop.family_card[1], "product_code": "sugar", "quantity_qty": 1500,
             "point_code": "P1"}
    assert client.post("/api/v1/redemptions", json=debit, headers=agent).json()["result"] == "ok"
    advice = client.post(f"/api/v1/redemptions/{debit_id}/undelivered", headers=agent)
    assert advice.status_code == 200 and advice.json()["result"] == "ok", advice.text
    assert _used(engine, "sugar", 1) == 0

    late_id = uuid.uuid4()
    voided = client.post(f"/api/v1/redemptions/{str(late_id).upper()}/undelivered", headers=agent)
    assert voided.json()["result"] == "voided"
    late = client.post("/api/v1/redemptions", json={**debit, "id": late_id.hex}, headers=agent)
    assert late.status_code == 409 and late.json()["error"] == "exists_with_different_payload"
    assert _used(engine, "sugar", 1) == 0

    hold_id = uuid.uuid4()
    hold = {"id": str(hold_id).upper(), "card_serial": pop.family_card[2], "product_code": "diesel",
            "quantity_qty": 40_000, "point_code": "P1"}
    assert client.post("/api/v1/holds", json=hold, headers=agent).json()["result"] == "ok"
    posted = client.post(f"/api/v1/holds/{hold_id.hex}/post", json={"quantity_qty": 30_000}, headers=agent)
    assert posted.status_code == 200 and posted.json()["quantity_qty"] == 30_000, posted.text
    assert _used(engine, "diesel", 2) == 30_000
    other = {**hold, "id": str(uuid.uuid4()), "card_serial": pop.family_card[3]}
    assert client.post("/api/v1/holds", json=other, headers=agent).json()["result"] == "ok"
    void = client.post(f"/api/v1/holds/{other['id'].upper()}/void", headers=agent)
    assert void.status_code == 200 and void.json()["result"] == "ok", void.text

    supervisor = auth(Role.SUPERVISOR)
    reversal = client.post("/api/v1/reversals", headers=supervisor, json={
        "id": str(uuid.uuid4()), "ref_entry_id": str(uuid.UUID(str(posted.json()["id"]))).upper(),
        "reason": "pumped less"})
    assert reversal.status_code == 200 and reversal.json()["quantity_qty"] == -30_000, reversal.text
    assert client.post("/api/v1/holds/not-a-uuid/void", headers=agent).status_code == 422
