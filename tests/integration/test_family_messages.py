"""What a family's message says (units, local time, receipt codes, money) and how it is sent: no
transaction is open while the SMS gateway is called, and a message is sent once across workers."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from quota import message_repository
from quota.message_repository import message_states
from quota.notify import Notifier, render
from quota.redemption import Redemption
from quota.service import LedgerService
from tests.integration.ledger_seed import NOW, T0, Population

World = tuple[LedgerService, Population, Engine]
DAMASCUS = ZoneInfo("Asia/Damascus")
BEIRUT = ZoneInfo("Asia/Beirut")
ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def rid() -> str:
    return str(uuid.uuid4())


def states_of(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return message_states(conn)


class Recorder:
    channel = "sms"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.sent: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def send(self, recipient: str, text: str) -> None:
        time.sleep(self.delay_s)
        with self.lock:
            self.sent.append((recipient, text))


class HangingGateway:
    """Answers only when ``release`` is set (or after ``limit_s``): a gateway that hangs."""

    channel = "sms"

    def __init__(self, limit_s: float = 4.0) -> None:
        self.calling = threading.Event()
        self.release = threading.Event()
        self.limit_s = limit_s
        self.sent: list[str] = []

    def send(self, recipient: str, text: str) -> None:
        self.calling.set()
        self.release.wait(self.limit_s)
        self.sent.append(text)


def texts(sender: Recorder) -> list[tuple[str, str]]:
    """(Arabic, English) of each message sent, in order."""
    return [tuple(t.split("\n", 1)) for _, t in sender.sent]  # type: ignore[misc]


# Sending --------------------------------------------------------------------------------------------
def test_no_transaction_is_open_while_the_gateway_is_called(world: World) -> None:
    """SQLite: a send inside the delivery transaction held the database's write lock, so every
    redemption and stock delivery waited behind a slow or hanging gateway."""
    svc, pop, db = world
    for f in (1, 2):
        assert svc.redeem(Redemption(rid(), pop.family_card[f], "sugar", 100, "P1")).ok
    gateway = HangingGateway()
    notifier = Notifier(db, gateway, clock=lambda: NOW)
    assert notifier.collect() == 2
    round_ = threading.Thread(target=notifier.deliver)
    round_.start()
    try:
        assert gateway.calling.wait(5)
        started = time.monotonic()
        assert svc.redeem(Redemption(rid(), pop.family_card[3], "sugar", 100, "P1")).ok
        assert svc.deliver_stock(rid(), "P1", "sugar", 1000, "truck").result == "ok"
        waited = time.monotonic() - started
        during = {m["state"] for m in states_of(db)}
    finally:
        gateway.release.set()
        round_.join()
    assert waited < 1.5, f"a redemption and a delivery waited {waited:.1f}s behind the gateway"
    assert during == {"sending"}  # claimed by the round, outside its transaction
    assert [m["state"] for m in states_of(db)] == ["sent", "sent"]
    assert all(m["attempts"] == 1 for m in states_of(db))


def test_two_workers_send_each_message_once(world: World) -> None:
    svc, pop, db = world
    for f in (1, 2, 3):
        for card in pop.member_cards[f]:
            assert svc.redeem(Redemption(rid(), card, "sugar", 100, "P1")).ok
    sender = Recorder(delay_s=0.05)
    workers = [Notifier(db, sender, clock=lambda: NOW, batch=4) for _ in range(2)]
    assert workers[0].collect() == 6
    done: list[tuple[int, int]] = []

    def rounds(n: Notifier) -> None:
        for _ in range(3):
            done.append(n.deliver())

    threads = [threading.Thread(target=rounds, args=(n,)) for n in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(s for s, _ in done) == 6 and sum(f for _, f in done) == 0
    assert len(sender.sent) == 6 and len(set(sender.sent)) == 6
    assert [(m["state"], m["attempts"]) for m in states_of(db)] == [("sent", 1)] * 6


def test_a_claim_left_by_a_dead_worker_is_sent_after_its_lease_and_only_once(world: World) -> None:
    svc, pop, db = world
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 100, "P1")).ok
    clock = [NOW]
    sender = Recorder()
    notifier = Notifier(db, sender, clock=lambda: clock[0], lease_s=600)
    assert notifier.collect() == 1
    with db.begin() as conn:  # a worker claims the message, then dies before sending
        dead = message_repository.claim_due(conn, "sms", NOW, NOW + timedelta(seconds=600), 10)
    assert [m["attempts"] for m in dead] == [1]
    clock[0] = NOW + timedelta(minutes=5)
    assert notifier.deliver() == (0, 0)  # still leased to the dead worker
    clock[0] = NOW + timedelta(minutes=11)
    assert notifier.deliver() == (1, 0)
    assert notifier.deliver() == (0, 0)
    assert len(sender.sent) == 1
    with db.begin() as conn:  # the dead worker's late record does not overwrite the new round's
        assert not message_repository.finish_claim(conn, int(dead[0]["id"]), 1, state="pending")
    assert [(m["state"], m["attempts"]) for m in states_of(db)] == [("sent", 2)]


def test_a_round_gives_back_what_it_cannot_send_within_its_lease(world: World) -> None:
    svc, pop, db = world
    for f in (1, 2, 3):
        assert svc.redeem(Redemption(rid(), pop.family_card[f], "sugar", 100, "P1")).ok
    ticks = [0.0]

    class Slow(Recorder):
        def send(self, recipient: str, text: str) -> None:
            super().send(recipient, text)
            ticks[0] += 6.0  # each send takes 6 s of a 10 s lease

    sender = Slow()
    notifier = Notifier(db, sender, clock=lambda: NOW, lease_s=10, monotonic=lambda: ticks[0])
    assert notifier.collect() == 3
    assert notifier.deliver() == (1, 0)  # past half the lease: the other two are given back
    assert [(m["state"], m["attempts"]) for m in states_of(db)] == [("sent", 1), ("pending", 0),
                                                                    ("pending", 0)]
    ticks[0] = 0.0
    assert notifier.deliver() == (1, 0)
    ticks[0] = 0.0
    assert notifier.deliver() == (1, 0)
    assert len(sender.sent) == 3 and {m["state"] for m in states_of(db)} == {"sent"}


def test_a_gateway_failure_is_kept_and_retried_with_back_off(world: World) -> None:
    svc, pop, db = world
    assert svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 100, "P1")).ok
    up = [False]
    sender = Recorder()

    class Flaky:
        channel = "sms"

        def send(self, recipient: str, text: str) -> None:
            if not up[0]:
                raise ConnectionError("gateway down")
            sender.send(recipient, text)

    clock = [NOW]
    notifier = Notifier(db, Flaky(), clock=lambda: clock[0])
    assert notifier.run_once() == (1, 0, 1)
    [m] = states_of(db)
    assert (m["state"], m["attempts"], m["last_error"]) == ("pending", 1, "gateway down")
    up[0] = True
    assert notifier.deliver() == (0, 0)  # 2 s back-off
    clock[0] = NOW + timedelta(seconds=3)
    assert notifier.deliver() == (1, 0)
    assert [(m["state"], m["attempts"]) for m in states_of(db)] == [("sent", 2)]


# Texts ----------------------------------------------------------------------------------------------
def test_texts_show_units_by_the_unit_in_local_time_with_codes_as_issued(world: World) -> None:
    svc, pop, db = world
    with db.begin() as conn:  # prices per 100 g and per ml: the unit shown must not follow them
        conn.execute(text("UPDATE products SET price_per_qty = 100 WHERE code = 'sugar'"))
        conn.execute(text("UPDATE products SET price_per_qty = 1 WHERE code = 'diesel'"))
    diesel = svc.redeem(Redemption(rid(), pop.family_card[1], "diesel", 49_999, "P1"))
    sugar = svc.redeem(Redemption(rid(), pop.member_cards[2][0], "sugar", 1500, "P2"))
    back = svc.reverse(rid(), diesel.entry_id, "pumped less", "user:sup", quantity_qty=30_000)
    extra = svc.topup(rid(), "family", 3, "sugar", 500, "travel", "user:reg")
    assert diesel.ok and sugar.ok and back.result == "ok" and extra.result == "ok"
    sender = Recorder()
    notifier = Notifier(db, sender, clock=lambda: NOW, zone=BEIRUT)
    assert notifier.run_once() == (4, 4, 0)
    (ar1, en1), (ar2, en2), (ar3, en3), (ar4, en4) = texts(sender)
    code = diesel.entry_id[:8].upper()
    # units: exact, by the unit (ml as L, g as kg), whatever the price basis
    assert "debited 49.999 L Diesel at Outlet 1; remaining 150.001 L" in en1
    assert "تم صرف ٤٩.٩٩٩ ل مازوت في مركز ١؛ المتبقي ١٥٠.٠٠١ ل" in ar1
    assert "debited 1.5 kg Sugar at Outlet 2; remaining 3.5 kg" in en2
    assert "١.٥ كغ سكر" in ar2
    # local time (NOW is 00:00 UTC: 02:00 in Beirut, winter time)
    assert "2026-11-03 02:00 EET" in en1 and "UTC" not in en1
    assert "٢٠٢٦-١١-٠٣ ٠٢:٠٠ EET" in ar1
    # receipt codes in Latin characters in the Arabic text too
    assert en1.endswith(f"receipt {code}") and ar1.endswith(f"الإيصال {code}")
    translated = code.translate(ARABIC_DIGITS)
    assert translated == code or translated not in ar1
    # a reversal names the debit it reverses
    own = back.entry_id[:8].upper()
    assert f"credited back 30 L Diesel at Outlet 1 for receipt {code}; remaining 180.001 L" in en3
    assert f"تمت إعادة ٣٠ ل مازوت في مركز ١ عن الإيصال {code}؛" in ar3
    assert en3.endswith(f"receipt {own}") and ar3.endswith(f"الإيصال {own}")
    # a top-up made at no point names none
    assert "granted extra 0.5 kg Sugar; remaining 5.5 kg;" in en4 and " at " not in en4
    assert "تمت إضافة ٠.٥ كغ سكر؛ المتبقي ٥.٥ كغ؛" in ar4 and " في " not in ar4


def test_a_stock_credit_names_its_debit_and_the_refund_with_its_currency(world: World) -> None:
    svc, pop, db = world
    svc.deliver_stock(rid(), "P1", "sugar", 10_000, "truck", now=NOW - timedelta(hours=1))
    a = svc.redeem(Redemption(rid(), pop.family_card[1], "sugar", 3000, "P1"))
    later = T0 + timedelta(days=35)  # November's row ended at T0 + 30 days
    credit = svc.reverse(rid(), a.entry_id, "late correction", "user:sup", now=later,
                         quantity_qty=1000, stock_only_if_closed=True)
    assert (credit.result, credit.price_minor) == ("stock_credited", -350)
    sender = Recorder()
    assert Notifier(db, sender, clock=lambda: later, zone=DAMASCUS).run_once() == (2, 2, 0)
    arabic, english = texts(sender)[1]
    code = a.entry_id[:8].upper()
    assert f"not handed over: 1 kg Sugar at Outlet 1 for receipt {code};" in english
    assert "refund due 350 SYP;" in english
    assert f"لم تُسلَّم: ١ كغ سكر في مركز ١ عن الإيصال {code}؛" in arabic
    assert "المبلغ المستحق إعادته ٣٥٠ ل.س؛" in arabic
    # Damascus has no lettered abbreviation (+03): the zone is named
    assert "2026-12-06 03:00 Asia/Damascus" in english and "٢٠٢٦-١٢-٠٦ ٠٣:٠٠ Asia/Damascus" in arabic


def entry(kind: str, qty: int, remaining: int | None, product: str, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "quantity_qty": qty, "remaining_qty": remaining, "product_code": product,
            "point_code": "P1", "created_at": datetime(2026, 11, 3, 22, 30, tzinfo=UTC),
            "entry_id": "abcdef12-0000-4000-8000-000000000000", "price_minor": 0, "ref_entry_id": None,
            **more}


POINTS = {"P1": ("مركز ١", "Outlet 1")}


def test_render_is_exact_for_large_quantities_and_labels_points() -> None:
    products = {"d": ("مازوت", "Diesel", "ml", 1000), "pts": ("مكافأة", "Reward", "point", 1),
                "gas": ("غاز", "Gas cylinder", "piece", 1), "bread": ("خبز", "Bread", "bundle", 1)}
    arabic, english = render(entry("redeem", 1_234_567, 1_000_000_000_001, "d"), products, POINTS)
    assert "debited 1234.567 L Diesel; " not in english  # the point is named
    assert "debited 1234.567 L Diesel at Outlet 1; remaining 1000000000.001 L" in english
    assert "١٢٣٤.٥٦٧ ل" in arabic and "e+" not in english
    assert "debited 5 L" in render(entry("redeem", 5000, 0, "d"), products, POINTS)[1]
    arabic, english = render(entry("redeem", 5, 10, "pts"), products, POINTS)
    assert "debited 5 pt Reward at Outlet 1; remaining 10 pt" in english
    assert "٥ نقطة مكافأة" in arabic and "point" not in arabic
    assert "2 pc Gas cylinder" in render(entry("redeem", 2, 0, "gas"), products, POINTS)[1]
    assert "3 ربطة خبز" in render(entry("redeem", 3, 0, "bread"), products, POINTS)[0].translate(
        str.maketrans("٠١٢٣٤٥٦٧٨٩", "0123456789"))
    # 22:30 UTC is already the next day in Damascus
    assert "2026-11-04 01:30 Asia/Damascus" in render(entry("redeem", 5000, 0, "d"), products, POINTS,
                                                      zone=DAMASCUS)[1]
