"""Settling holds, retries and grants as the audit found them, on SQLite and PostgreSQL:

1. a refused post (the pump's 30.001 L on a 30 L hold) leaves the hold pending and is not stored under the
   post's id, so the true figure can still be posted (and leaves point stock) — nothing is sold outside
   the card;
2. a retry racing its original request (same top-up, rebind or hold id) is answered from the journal, and
   no IntegrityError is ever a plain-text 500;
3. a top-up's cap is part of its payload, and a deployment bound caps what a registrar can grant;
4. only a registrar or supervisor moves a holder's home station; a post of nothing messages nobody.

The races run on PostgreSQL with two real requests. They are ordered, not timed: the rule terms the
service takes (its ``terms_for`` port, looked up inside its transaction after it found no stored answer
and locked the allowance) hold the first request until ``pg_stat_activity`` shows the second one
waiting on that lock — so the second has already found no stored answer, and must insert under an id the
first then commits. No production code is patched.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from card_backend.app import create_app
from card_backend.auth.principal import Role
from card_backend.auth.security import new_device_token, token_sha256
from card_backend.config import Settings
from quota import ledger_reports
from quota.domain.terms import Terms
from quota.notify import Notifier
from quota.redemption import Outcome, StaticTerms
from quota.service import LedgerService, derived_id
from tests.integration.ledger_seed import NOW, TERMS, Population, seed

World = tuple[LedgerService, Population, Engine]


def rid() -> str:
    return str(uuid.uuid4())


def allowance(db: Engine, aid: int) -> dict[str, Any]:
    with db.connect() as conn:
        row = conn.execute(text("SELECT granted_qty, used_qty, held_qty, topup_qty, home_point_code, "
                                "binding_changes FROM allowances WHERE id = :i"), {"i": aid}).mappings().one()
        return dict(row)


def journal(db: Engine, entry_id: str) -> list[tuple[str, str, int]]:
    with db.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT kind, result, quantity_qty FROM journal WHERE entry_id = :e"), {"e": entry_id})]


def dispensed(db: Engine, point: str, product: str) -> int:
    rows = ledger_reports.stock_report(db, point, NOW.date(), NOW.date())["balances"]
    return int(next(b["dispensed_qty"] for b in rows if b["product_code"] == product))


# 1. a refused post leaves the hold open ---------------------------------------------------------------
def test_a_refused_post_leaves_the_hold_pending_and_the_true_figure_posts(world: World) -> None:
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "diesel", 100_000, now=NOW - timedelta(hours=1))
    hold = rid()
    assert svc.hold(hold, pop.family_card[1], "diesel", 30_000, "P1").ok
    over = svc.post(hold, 30_001)
    assert (over.result, over.replayed, over.remaining_qty) == ("exceeds_hold", False, 170_000)
    assert journal(db, derived_id(hold, "post")) == []  # answered, not stored under the post's id
    assert svc.post(hold, 30_001).result == "exceeds_hold"  # a retry is refused afresh
    posted = svc.post(hold, 30_000)  # the pump's true figure
    assert (posted.result, posted.quantity_qty, posted.remaining_qty) == ("ok", 30_000, 170_000)
    diesel = allowance(db, pop.allowance_of[(1, "diesel")])
    assert (diesel["used_qty"], diesel["held_qty"]) == (30_000, 0)
    assert dispensed(db, "P1", "diesel") == 30_000  # it left the point's stock
    assert journal(db, derived_id(hold, "post")) == [("post", "ok", 30_000)]
    assert svc.post(hold, 30_000).replayed is True
    assert svc.post(hold, 30_001).result == "exists_with_different_payload"  # the hold is settled now
    assert svc.expire_holds(NOW + timedelta(hours=1)) == 0


def test_a_refused_post_then_void_and_an_expired_hold_are_still_journalled(world: World) -> None:
    svc, pop, db = world
    hold = rid()
    assert svc.hold(hold, pop.family_card[2], "diesel", 20_000, "P1").ok
    assert svc.post(hold, 20_001).result == "exceeds_hold"
    assert svc.void(hold, point="P2").result == "wrong_point"  # another point: nothing moves, nothing stored
    assert journal(db, derived_id(hold, "void")) == []
    assert svc.void(hold, point="P1").ok  # the void settles the hold, and is stored
    assert journal(db, derived_id(hold, "void")) == [("void", "ok", 0)]
    late = svc.post(hold, 20_000)
    assert late.result == "hold_not_pending"
    assert journal(db, derived_id(hold, "post")) == [("post", "hold_not_pending", 0)]
    assert allowance(db, pop.allowance_of[(2, "diesel")])["held_qty"] == 0

    expired = rid()
    assert svc.hold(expired, pop.family_card[3], "diesel", 20_000, "P1").ok
    assert svc.post(expired, 20_001).result == "exceeds_hold"
    after = NOW + timedelta(seconds=601)
    assert svc.post(expired, 20_000, now=after).result == "hold_expired"  # settles it: stored, replayed
    assert journal(db, derived_id(expired, "post")) == [("post", "hold_expired", 0)]
    assert svc.post(expired, 20_000, now=after).replayed is True


def test_a_refused_post_over_http_lets_the_true_figure_post(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population
) -> None:
    clerk = auth(Role.CLERK)
    hold = {"id": rid(), "card_serial": pop.family_card[1], "product_code": "diesel", "quantity_qty": 30_000,
            "point_code": "P1"}
    assert client.post("/api/v1/holds", json=hold, headers=clerk).status_code == 200
    url = f"/api/v1/holds/{hold['id']}/post"
    over = client.post(url, json={"quantity_qty": 30_500}, headers=clerk)
    assert over.status_code == 409 and over.json()["error"] == "exceeds_hold"
    assert over.json()["detail"]["remaining_qty"] == 170_000
    real = client.post(url, json={"quantity_qty": 30_000}, headers=clerk)
    assert real.status_code == 200, real.text
    assert real.json()["quantity_qty"] == 30_000 and real.json()["replayed"] is False
    voided = client.post(f"/api/v1/holds/{hold['id']}/void", headers=clerk)
    assert voided.status_code == 409 and voided.json()["error"] == "hold_not_pending"


# 2. a retry racing its original, and no IntegrityError as a plain-text 500 ---------------------------
class GatedTerms:
    """The seed's rule terms; once ``armed``, the next lookup waits until another backend waits on a lock."""

    def __init__(self, db: Engine) -> None:
        self.terms = StaticTerms(TERMS)
        self.db = db
        self.armed = threading.Event()
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, conn: Connection, rule_version_id: int) -> Terms:
        with self._lock:
            gate = self.armed.is_set()
            self.armed.clear()
        if gate:
            self.entered.set()
            deadline = time.monotonic() + 15
            while not self._someone_waits():
                assert time.monotonic() < deadline, "the second request never waited for the first's lock"
                time.sleep(0.01)
        return self.terms(conn, rule_version_id)

    def _someone_waits(self) -> bool:
        with self.db.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one())


def race(gate: GatedTerms, request: Callable[[], Any]) -> tuple[Any, Any]:
    """The same request twice: the first held inside its transaction until the second waits on its lock."""
    answers: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            answers[name] = request()
        except Exception as exc:  # the answer under test
            answers[name] = exc

    gate.armed.set()
    first = threading.Thread(target=run, args=("first",))
    first.start()
    assert gate.entered.wait(15), "the first request never looked up its terms"
    second = threading.Thread(target=run, args=("second",))
    second.start()
    first.join(30)
    second.join(30)
    return answers["first"], answers["second"]


@pytest.fixture
def gated(engine: Engine) -> tuple[LedgerService, GatedTerms, Population, Engine]:
    pop = seed(engine)
    gate = GatedTerms(engine)
    return LedgerService(engine, gate, None, hold_ttl_s=600, clock=lambda: NOW), gate, pop, engine


def _replays(first: Any, second: Any) -> None:
    assert isinstance(first, Outcome) and first.ok and not first.replayed, first
    assert isinstance(second, Outcome), second
    assert second == first._replace(replayed=True)


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_topup_racing_its_retry_replays_it(gated) -> None:  # type: ignore[no-untyped-def]
    svc, gate, pop, db = gated
    before = allowance(db, pop.allowance_of[(1, "diesel")])
    top = rid()
    first, second = race(gate, lambda: svc.topup(top, "family", 1, "diesel", 10_000, "travel", "user:reg"))
    _replays(first, second)
    after = allowance(db, pop.allowance_of[(1, "diesel")])
    assert after["granted_qty"] - before["granted_qty"] == 10_000  # granted once
    assert journal(db, top) == [("topup", "ok", 10_000)]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_rebind_racing_its_retry_replays_it(gated) -> None:  # type: ignore[no-untyped-def]
    svc, gate, pop, db = gated
    move = rid()
    first, second = race(gate, lambda: svc.rebind(move, "family", 1, "diesel", "P2", "user:reg"))
    _replays(first, second)
    assert allowance(db, pop.allowance_of[(1, "diesel")])["home_point_code"] == "P2"
    assert journal(db, move) == [("rebind", "ok", 0)]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_hold_racing_its_retry_replays_it(gated) -> None:  # type: ignore[no-untyped-def]
    svc, gate, pop, db = gated
    hold = rid()
    first, second = race(gate, lambda: svc.hold(hold, pop.family_card[2], "sugar", 1000, "P1"))
    _replays(first, second)
    assert allowance(db, pop.allowance_of[(2, "sugar")])["held_qty"] == 1000  # reserved once
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM holds WHERE id = :h"), {"h": hold}).scalar_one() == 1


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_topup_racing_its_retry_over_http_is_two_json_answers(  # type: ignore[no-untyped-def]
    app, client: TestClient, auth, engine: Engine
) -> None:
    pop = seed(engine)
    gate = GatedTerms(engine)
    app.state.ledger = LedgerService(engine, gate, None, hold_ttl_s=600, clock=lambda: NOW)
    registrar = auth(Role.REGISTRAR)
    top = {"id": rid(), "holder_type": "family", "holder_id": 1, "product_code": "diesel",
           "quantity_qty": 10_000, "reason": "travel top-up"}
    before = allowance(engine, pop.allowance_of[(1, "diesel")])["granted_qty"]

    def send() -> tuple[int, dict[str, Any]]:
        r = client.post("/api/v1/topups", json=top, headers=registrar)
        return r.status_code, r.json()  # a plain-text 500 would not parse

    first, second = race(gate, send)
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    assert first[0] == second[0] == 200, (first, second)
    assert (first[1]["replayed"], second[1]["replayed"]) == (False, True)
    assert {**second[1], "replayed": False} == first[1]
    assert allowance(engine, pop.allowance_of[(1, "diesel")])["granted_qty"] == before + 10_000


def test_an_integrity_error_is_a_json_409_not_a_plain_500(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population, engine: Engine
) -> None:
    """A hold id already taken in ``holds`` with no journal answer (nothing to replay): the unique index
    refuses the insert on both tries, and the answer is the error body, not an HTML/plain-text 500."""
    taken = rid()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO holds (id, allowance_id, point_code, reserved_qty, state, expires_at, "
                          "created_at) VALUES (:h, 1, 'P1', 1, 'voided', :t, :t)"), {"h": taken, "t": NOW})
    hold = {"id": taken, "card_serial": pop.family_card[1], "product_code": "sugar", "quantity_qty": 1000,
            "point_code": "P1"}
    r = client.post("/api/v1/holds", json=hold, headers=auth(Role.CLERK))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "constraint_violated"
    assert isinstance(r.json()["detail"], str)
    assert allowance(engine, pop.allowance_of[(1, "sugar")])["held_qty"] == 0  # nothing reserved


# 3. top-up idempotency and the deployment's bound ------------------------------------------------------
def test_a_topup_cap_is_part_of_its_payload(world: World) -> None:
    svc, pop, db = world
    top = rid()
    first = svc.topup(top, "family", 1, "diesel", 40_000, "travel top-up", "user:reg", 40_000)
    assert first.ok
    assert svc.topup(top, "family", 1, "diesel", 40_000, "travel top-up", "user:reg", 40_000).replayed
    other_cap = svc.topup(top, "family", 1, "diesel", 40_000, "travel top-up", "user:reg", 10_000)
    assert other_cap.result == "exists_with_different_payload"
    no_cap = svc.topup(top, "family", 1, "diesel", 40_000, "travel top-up", "user:reg")
    assert no_cap.result == "exists_with_different_payload"
    assert allowance(db, pop.allowance_of[(1, "diesel")])["topup_qty"] == 40_000


def test_a_topup_without_a_cap_is_bounded_by_the_deployment(world: World) -> None:
    svc, pop, db = world  # family 1's diesel: 200 L base; by default a period's top-ups reach 100 % of it
    aid = pop.allowance_of[(1, "diesel")]
    huge = svc.topup(rid(), "family", 1, "diesel", 500_000, "travel", "user:reg")
    assert (huge.result, huge.quantity_qty) == ("exceeds_allowance", 0)
    assert svc.topup(rid(), "family", 1, "diesel", 150_000, "travel", "user:reg").ok
    assert svc.topup(rid(), "family", 1, "diesel", 50_001, "travel", "user:reg").result == "exceeds_allowance"
    assert svc.topup(rid(), "family", 1, "diesel", 50_000, "travel", "user:reg").ok
    assert allowance(db, aid)["topup_qty"] == 200_000

    tight = LedgerService(db, StaticTerms(TERMS), None, clock=lambda: NOW, topup_max_percent=10,
                          topup_period_max_percent=15)  # family 2: 20 L at once, 30 L a period

    def grant(qty: int, cap_qty: int | None = None) -> str:
        return tight.topup(rid(), "family", 2, "diesel", qty, "travel", "user:reg", cap_qty).result

    assert grant(20_001) == "exceeds_allowance"
    assert grant(20_000) == "ok"
    assert grant(10_001) == "exceeds_allowance"
    assert grant(10_000, cap_qty=25_000) == "exceeds_allowance"  # the caller's cap binds too when tighter
    assert grant(10_000) == "ok"
    assert allowance(db, pop.allowance_of[(2, "diesel")])["topup_qty"] == 30_000


def test_topups_over_http_idempotent_on_the_cap_and_bounded(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population
) -> None:
    registrar = auth(Role.REGISTRAR)
    top = {"id": rid(), "holder_type": "family", "holder_id": 1, "product_code": "diesel",
           "quantity_qty": 40_000, "reason": "travel top-up", "cap_qty": 40_000}
    assert client.post("/api/v1/topups", json=top, headers=registrar).status_code == 200
    other = client.post("/api/v1/topups", json={**top, "cap_qty": 10_000}, headers=registrar)
    assert other.status_code == 409 and other.json()["error"] == "exists_with_different_payload"
    huge = client.post("/api/v1/topups", json={**top, "id": rid(), "quantity_qty": 500_000, "cap_qty": None},
                       headers=registrar)
    assert huge.status_code == 409 and huge.json()["error"] == "exceeds_allowance"
    assert huge.json()["detail"]["quantity_qty"] == 0


def test_the_topup_bounds_are_deployment_settings(  # type: ignore[no-untyped-def]
    engine: Engine, settings: Settings, auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings.model_fields["topup_max_percent"].default == 100
    assert Settings.model_fields["topup_period_max_percent"].default == 100
    monkeypatch.setenv("CARD_TOPUP_MAX_PERCENT", "25")
    monkeypatch.setenv("CARD_TOPUP_PERIOD_MAX_PERCENT", "60")
    configured = Settings(database_url=str(engine.url), jwt_secret=settings.jwt_secret)
    assert (configured.topup_max_percent, configured.topup_period_max_percent) == (25, 60)
    app = create_app(configured, engine)
    registrar = auth(Role.REGISTRAR)  # signed with the same secret: valid in this app too
    with TestClient(app) as c:
        assert c.get("/api/v1/cards/NOPE/quota", headers=registrar).status_code == 404  # builds the ledger
    ledger: LedgerService = app.state.ledger
    assert (ledger.topup_max_percent, ledger.topup_period_max_percent) == (25, 60)


# 4. who moves a home station, and a post of nothing ----------------------------------------------------
def _point_id(db: Engine, code: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT id FROM points WHERE code = :c"), {"c": code}).scalar_one())


def test_only_a_registrar_or_supervisor_moves_a_home_station(  # type: ignore[no-untyped-def]
    client: TestClient, auth, pop: Population, engine: Engine
) -> None:
    p2 = _point_id(engine, "P2")
    token = new_device_token()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO devices (point_id, name, token_sha256) VALUES (:p, 'agent-P2', :h)"),
                     {"p": p2, "h": token_sha256(token)})
    fill = {"id": rid(), "card_serial": pop.family_card[1], "product_code": "diesel", "quantity_qty": 20_000,
            "point_code": "P1"}
    assert client.post("/api/v1/redemptions", json=fill, headers=auth(Role.CLERK)).status_code == 200
    move = {"holder_type": "family", "holder_id": 1, "product_code": "diesel", "point_code": "P2"}
    for headers in (auth(Role.CLERK, point_id=p2), {"Authorization": f"Bearer {token}"}):
        r = client.post("/api/v1/bindings", json={"id": rid(), **move}, headers=headers)
        assert r.status_code == 403 and r.json()["error"] == "role_forbidden"
    aid = pop.allowance_of[(1, "diesel")]
    assert (allowance(engine, aid)["home_point_code"], allowance(engine, aid)["binding_changes"]) == ("P1", 0)
    for role in (Role.REGISTRAR, Role.SUPERVISOR):
        back = {"id": rid(), **move, "point_code": "P1"}
        r = client.post("/api/v1/bindings", json=back, headers=auth(role))
        assert r.status_code == 200, r.text
    moved = client.post("/api/v1/bindings", json={"id": rid(), **move}, headers=auth(Role.SUPERVISOR))
    assert moved.status_code == 200 and allowance(engine, aid)["home_point_code"] == "P2"


def test_a_post_of_nothing_messages_nobody(world: World) -> None:
    svc, pop, db = world
    sent: list[str] = []

    class Sender:
        channel = "sms"

        def send(self, recipient: str, text: str) -> None:
            sent.append(text)

    empty, fill = rid(), rid()
    assert svc.hold(empty, pop.family_card[1], "diesel", 20_000, "P1").ok
    assert svc.post(empty, 0).ok  # the pump never started: an ok post of nothing
    assert svc.hold(fill, pop.family_card[2], "diesel", 20_000, "P1").ok
    assert svc.post(fill, 15_000).ok
    notifier = Notifier(db, Sender(), clock=lambda: NOW)
    assert notifier.run_once() == (1, 1, 0)
    assert len(sent) == 1 and "debited 15 L Diesel" in sent[0]
    assert notifier.collect() == 0  # the position moved past the empty post
