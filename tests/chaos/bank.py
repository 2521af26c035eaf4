"""The bank test's population, clients and invariant checks (Jepsen's bank test, for quotas).

Clients redeem through the HTTP API against a few hot holders and many cold ones, retrying with the
same id until they get an answer; whatever answer a client got is an acknowledgement the ledger must
honour after any crash. ``check`` then counts overdraws, lost acknowledgements and double-applied ids.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
from sqlalchemy import Engine, insert, text
from sqlalchemy.orm import Session

from card_backend.auth.security import new_device_token, token_sha256
from card_backend.card.models import Card
from card_backend.family.models import Family
from card_backend.point.models import Device, Point
from quota import rules_repository
from quota.domain.rules import Rule
from quota.models import Allowance, Product

HOT, COLD = 10, 300
HOT_GRANT, COLD_GRANT = 400, 40


@dataclass
class Ack:
    serial: str
    quantity: int
    result: str
    remaining: int | None


@dataclass
class Ledger:
    """What the clients were told, shared by all client threads."""

    acks: dict[str, Ack] = field(default_factory=dict)
    replay_mismatches: int = 0
    retries: int = 0
    unanswered: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def seed(engine: Engine) -> str:
    """Products, one monthly family rule, a point with a device, hot and cold families with cards."""
    now = datetime.now(UTC)
    with Session(engine) as s, s.begin():
        s.add(
            Product(
                code="sugar",
                name_ar="سكر",
                name_en="Sugar",
                unit="g",
                price_per_qty=1000,
                free_price_minor=3500,
            )
        )
        s.flush()
        rule = Rule.model_validate(
            {
                "code": "sugar_bank",
                "product": "sugar",
                "holder_type": "family",
                "amount": {"base_qty": HOT_GRANT},
                "period": {"kind": "month"},
                "tiers": [{"name": "subsidised", "price_minor": 350}],
                "effective_from": "2020-01-01",
            }
        )
        version = rules_repository.add_version(s, rule, created_by="bank")
        rule_version_id = version.id
        s.add(
            Point(
                code="BANK1",
                name_ar="مركز",
                name_en="Outlet",
                kind="state_outlet",
                governorate="damascus",
                products=["sugar"],
                active=True,
            )
        )
        s.flush()
        token = new_device_token()
        point_id = s.scalar(text("SELECT id FROM points WHERE code = 'BANK1'"))
        s.add(Device(point_id=point_id, name="bank-agent", token_sha256=token_sha256(token)))
    n = HOT + COLD
    with engine.begin() as conn:
        conn.execute(
            insert(Family),
            [{"id": f, "book_number": f"BANK{f:06d}", "governorate": "damascus"} for f in range(1, n + 1)],
        )
        conn.execute(
            insert(Card),
            [
                {"serial": f"BK{f:06d}", "holder_type": "family", "holder_id": f, "state": "active"}
                for f in range(1, n + 1)
            ],
        )
        conn.execute(
            insert(Allowance),
            [
                {
                    "holder_type": "family",
                    "holder_id": f,
                    "product_code": "sugar",
                    "rule_version_id": rule_version_id,
                    "period_start": now - timedelta(days=1),
                    "period_end": now + timedelta(days=30),
                    "base_qty": HOT_GRANT if f <= HOT else COLD_GRANT,
                    "granted_qty": HOT_GRANT if f <= HOT else COLD_GRANT,
                }
                for f in range(1, n + 1)
            ],
        )
    _ = date
    return token


def client_loop(
    ports: list[int], token: str, ledger: Ledger, stop: threading.Event, give_up_at: float, seed: int
) -> None:
    rnd = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=5.0, headers=headers) as http:
        while not stop.is_set():
            holder = rnd.randint(1, HOT) if rnd.random() < 0.7 else rnd.randint(HOT + 1, HOT + COLD)
            body = {
                "id": str(uuid.uuid4()),
                "card_serial": f"BK{holder:06d}",
                "product_code": "sugar",
                "quantity_qty": rnd.randint(1, 5),
                "point_code": "BANK1",
            }
            ack = _send_until_answered(http, rnd, ports, body, ledger, give_up_at)
            if ack is None:
                continue
            with ledger.lock:
                ledger.acks[body["id"]] = ack
            if rnd.random() < 0.05:  # a retry after an answer must replay it exactly
                again = _send_until_answered(http, rnd, ports, body, ledger, give_up_at)
                if again is not None and (again.result, again.remaining) != (ack.result, ack.remaining):
                    with ledger.lock:
                        ledger.replay_mismatches += 1


def _send_until_answered(
    http: httpx.Client,
    rnd: random.Random,
    ports: list[int],
    body: dict[str, object],
    ledger: Ledger,
    give_up_at: float,
) -> Ack | None:
    while time.monotonic() < give_up_at:
        port = rnd.choice(ports)
        try:
            r = http.post(f"http://127.0.0.1:{port}/api/v1/redemptions", json=body)
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code in (200, 409):
            data = r.json()
            answer = data if r.status_code == 200 else data["detail"]
            return Ack(
                str(body["card_serial"]),
                int(body["quantity_qty"]),
                str(answer["result"]),
                answer.get("remaining_qty"),
            )
        with ledger.lock:
            ledger.retries += 1
        time.sleep(0.05 + rnd.random() * 0.1)
    with ledger.lock:
        ledger.unanswered += 1
    return None


@dataclass(frozen=True)
class Invariants:
    acked: int
    acked_ok: int
    overdraws: int
    journal_mismatches: int
    lost_acks: int
    double_applied: int
    replay_mismatches: int

    def line(self) -> str:
        return (
            f"bank: acked={self.acked} ok={self.acked_ok} overdraws={self.overdraws} "
            f"journal_mismatches={self.journal_mismatches} lost_acks={self.lost_acks} "
            f"double_applied={self.double_applied} replay_mismatches={self.replay_mismatches}"
        )


def check(engine: Engine, ledger: Ledger) -> Invariants:
    with engine.connect() as conn:
        overdraws = conn.scalar(
            text("SELECT count(*) FROM allowances WHERE used_qty < 0 OR used_qty + held_qty > granted_qty")
        )
        mismatches = conn.scalar(
            text(
                "SELECT count(*) FROM allowances a LEFT JOIN (SELECT allowance_id, sum(quantity_qty) AS s "
                "FROM journal GROUP BY allowance_id) j ON j.allowance_id = a.id "
                "WHERE a.used_qty <> coalesce(j.s, 0)"
            )
        )
        rows = conn.execute(text("SELECT entry_id, result, quantity_qty FROM journal")).all()
    seen = Counter(r[0] for r in rows)
    by_id = {r[0]: (r[1], r[2]) for r in rows}
    lost = 0
    for entry_id, ack in ledger.acks.items():
        got = by_id.get(entry_id)
        if got is None or got[0] != ack.result or (ack.result == "ok" and got[1] != ack.quantity):
            lost += 1
    double = sum(1 for c in seen.values() if c > 1)
    return Invariants(
        acked=len(ledger.acks),
        acked_ok=sum(1 for a in ledger.acks.values() if a.result == "ok"),
        overdraws=int(overdraws or 0),
        journal_mismatches=int(mismatches or 0),
        lost_acks=lost,
        double_applied=double,
        replay_mismatches=ledger.replay_mismatches,
    )
