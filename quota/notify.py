"""A message to the family on every debit, read from the journal (invariant 8).

The journal is the outbox: ``collect`` reads journal entries of debit kinds after the sender's saved
position (``message_cursors``), renders an Arabic and an English text, stores one ``messages`` row per
entry and channel (unique), and advances the position in the same transaction — nothing is added to
the redemption's hot path, and a committed debit is queued exactly once. ``deliver`` claims the due
messages in one short transaction and sends them outside any transaction (``Notifier.deliver``); a
failure is kept with its error and retried with capped back-off, forever: when the SMS gateway is down
nothing is lost, the messages wait. Texts give quantities in the unit's display unit (L, kg, pieces)
and times in the deployment's zone. Senders: a console/file sender (default) and an
HTTP SMS-gateway sender.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx
from sqlalchemy import Engine

from quota import ledger_repository as repo
from quota import message_repository as message_repo
from quota import seal_repository as seal_repo
from quota.domain.texts import CURRENCY, arabic_digits, local_time, quantity, receipt_code
from quota.redemption import utcnow

log = logging.getLogger(__name__)
class Sender(Protocol):
    channel: str

    def send(self, recipient: str, text: str) -> None:
        """Deliver or raise; a raised error leaves the message pending for a retry."""


class ConsoleSender:
    """Writes each message as one line to a stream or a file (the default, and the demo's)."""

    channel = "sms"

    def __init__(self, path: Path | None = None, stream: TextIO | None = None) -> None:
        self.path = path
        self.stream = stream or sys.stdout

    def send(self, recipient: str, text: str) -> None:
        line = f"to={recipient} {text}\n"
        if self.path is None:
            self.stream.write(line)
            return
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line)


class HttpSmsSender:
    """POSTs ``{"to", "text"}`` to an SMS gateway; any non-2xx answer or network error is a failure."""

    channel = "sms"

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self.client = httpx.Client(timeout=timeout_s, headers=headers)

    def send(self, recipient: str, text: str) -> None:
        self.client.post(self.url, json={"to": recipient, "text": text}).raise_for_status()


def make_sender(gateway_url: str | None = None, gateway_token: str | None = None,
                outbox_path: Path | None = None) -> Sender:
    """The HTTP SMS gateway when a URL is configured, else the console/file sender."""
    if gateway_url:
        return HttpSmsSender(gateway_url, gateway_token)
    return ConsoleSender(outbox_path)


def render(entry: dict[str, Any], products: dict[str, tuple[str, str, str, int]],
           points: dict[str, tuple[str, str]], *, zone: tzinfo = UTC,
           currency: tuple[str, str] = CURRENCY) -> tuple[str, str]:
    """(Arabic, English) text: product, quantity, point, remaining, local time, receipt code.

    ``products``: code -> (name_ar, name_en, unit, price_per_qty); the quantity is shown by the unit
    alone (ml as L, g as kg, exactly). A reversal names the receipt of the debit it reverses; a top-up
    made at no point names none; receipt codes stay in Latin characters in the Arabic text too, so a
    family reading one out gives the code the point looks up."""
    code = str(entry["product_code"])
    name_ar, name_en, unit, _ = products.get(code, (code, code, "", 1))
    point_code = entry.get("point_code")
    at_en = at_ar = ""
    if point_code:
        point_ar, point_en = points.get(str(point_code), (str(point_code), str(point_code)))
        at_en, at_ar = f" at {point_en}", f" في {point_ar}"
    qty_en, qty_ar = quantity(abs(int(entry["quantity_qty"])), unit)
    rem_en, rem_ar = quantity(int(entry["remaining_qty"] or 0), unit)
    when = local_time(repo.utc(entry["created_at"]), zone)
    receipt = receipt_code(entry["entry_id"])
    # The debit a reversal undoes (a post's ref_entry_id is its own hold: not named).
    ref = entry.get("ref_entry_id") if entry["kind"] in repo.REVERSAL_KINDS else None
    of_en = f" for receipt {receipt_code(ref)}" if ref else ""
    of_ar = f" عن الإيصال {receipt_code(ref)}" if ref else ""
    if entry["kind"] == "stock_credit":  # a debit of a closed period reversed: money back, quota not
        refund = str(abs(int(entry["price_minor"] or 0)))
        cur_en, cur_ar = currency
        english = (f"not handed over: {qty_en} {name_en}{at_en}{of_en}; that period has ended, so the "
                   f"quota is not credited back; refund due {refund} {cur_en}; {when}; receipt {receipt}")
        arabic = (arabic_digits(f"لم تُسلَّم: {qty_ar} {name_ar}{at_ar}") + of_ar
                  + arabic_digits(f"؛ انتهت تلك الفترة فلا تُعاد الكمية إلى المخصص؛ المبلغ المستحق "
                                  f"إعادته {refund} {cur_ar}؛ {when}؛ الإيصال ") + receipt)
        return arabic, english
    verb_en, verb_ar = {
        "redeem": ("debited", "تم صرف"), "post": ("debited", "تم صرف"),
        "reverse": ("credited back", "تمت إعادة"), "topup": ("granted extra", "تمت إضافة"),
        "withdrawal": ("top-up withdrawn", "تم سحب إضافة"),
    }[str(entry["kind"])]
    english = (f"{verb_en} {qty_en} {name_en}{at_en}{of_en}; remaining {rem_en}; {when}; "
               f"receipt {receipt}")
    arabic = (arabic_digits(f"{verb_ar} {qty_ar} {name_ar}{at_ar}") + of_ar
              + arabic_digits(f"؛ المتبقي {rem_ar}؛ {when}؛ الإيصال ") + receipt)
    return arabic, english


class Notifier:
    """Queues and sends the family messages. ``zone``: the deployment's zone (``settings.zone``) the
    texts give times in; ``lease_s``: how long a round's claim on its messages holds (see ``deliver``)."""

    def __init__(self, db: Engine, sender: Sender, *, batch: int = 500, max_backoff_s: int = 300,
                 clock: Callable[[], datetime] = utcnow, zone: tzinfo = UTC,
                 currency: tuple[str, str] = CURRENCY, lease_s: float = 600.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.sender = sender
        self.batch = batch
        self.max_backoff_s = max_backoff_s
        self.clock = clock
        self.zone = zone
        self.currency = currency
        self.lease_s = lease_s
        self.monotonic = monotonic

    def collect(self) -> int:
        """Queue a message for every new debit entry (not a post of nothing); returns how many were queued."""
        cursor_name = f"notify-{self.sender.channel}"
        with self.db.begin() as conn:
            watermark = seal_repo.committed_watermark(conn)
        queued = 0
        with self.db.begin() as conn:
            repo.begin_write(conn)
            position = message_repo.lock_cursor(conn, cursor_name)
            products, points = message_repo.names(conn)
            while True:
                entries = [e for e in repo.entries_after(conn, position, repo.FAMILY_KINDS, self.batch)
                           if e["seq"] <= watermark]
                if not entries:
                    break
                # A hold posted with nothing dispensed is an ok "post" of 0: no debit, no message.
                debits = [e for e in entries if int(e["quantity_qty"]) != 0]
                found = message_repo.recipients(conn, debits)
                now = self.clock()
                rows = []
                for e in debits:
                    to = found.get(int(e["seq"]), {})
                    text_ar, text_en = render(e, products, points, zone=self.zone, currency=self.currency)
                    rows.append({"seq": e["seq"], "channel": self.sender.channel,
                                 "recipient": to.get("phone") or "", "text_ar": text_ar, "text_en": text_en,
                                 "state": "pending" if to.get("phone") else "no_recipient", "attempts": 0,
                                 "last_error": "", "next_attempt_at": now, "created_at": now})
                message_repo.insert_messages(conn, rows)
                queued += len(rows)
                position = int(entries[-1]["seq"])
            message_repo.save_cursor(conn, cursor_name, position)
        return queued

    def _finish(self, message_id: int, token: int, **values: Any) -> bool:
        """Record one result in its own short write transaction (on SQLite, the write lock for just it)."""
        with self.db.begin() as conn:
            repo.begin_write(conn)
            return message_repo.finish_claim(conn, message_id, token, **values)

    def _release(self, claims: list[dict[str, Any]]) -> None:
        with self.db.begin() as conn:
            repo.begin_write(conn)
            message_repo.release(conn, [(int(m["id"]), int(m["attempts"])) for m in claims], self.clock())

    def deliver(self) -> tuple[int, int]:
        """Send the due messages; returns (sent, failed this round).

        No transaction is open while the gateway is called (on SQLite one would hold the database's
        write lock, and every redemption would wait behind a slow gateway). Instead: one short write
        transaction claims the due messages (state ``sending``, a lease until ``next_attempt_at``, and
        ``attempts`` counted up, which is the claim's token); each is sent outside any transaction; each
        result is recorded in its own short transaction, only while the claim is still this round's.
        Another worker claims only what is pending, or whose lease ran out (a worker that died mid-send:
        sent again, at least once). So no message is sent twice by live workers, a round stops sending
        at half its lease and gives the rest back."""
        sent = failed = 0
        channel = self.sender.channel
        now = self.clock()
        with self.db.begin() as conn:
            repo.begin_write(conn)
            claimed = message_repo.claim_due(conn, channel, now, now + timedelta(seconds=self.lease_s),
                                             self.batch)
        started = self.monotonic()
        for i, message in enumerate(claimed):
            message_id, token = int(message["id"]), int(message["attempts"])
            if self.monotonic() - started > self.lease_s / 2:  # the lease is running out: give back the rest
                self._release(claimed[i:])
                break
            try:
                self.sender.send(message["recipient"], f"{message['text_ar']}\n{message['text_en']}")
            except Exception as exc:  # the gateway's failure is data: kept, retried later
                backoff = min(2**token, self.max_backoff_s)
                error = (str(exc) or type(exc).__name__)[:200]
                self._finish(message_id, token, state="pending", last_error=error,
                             next_attempt_at=self.clock() + timedelta(seconds=backoff))
                failed += 1
            else:
                if not self._finish(message_id, token, state="sent", sent_at=self.clock()):
                    log.warning("message %s sent after its claim was taken over", message_id)
                sent += 1
        return sent, failed

    def run_once(self) -> tuple[int, int, int]:
        queued = self.collect()
        sent, failed = self.deliver()
        return queued, sent, failed

    def run_forever(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        """The sender job: collect and deliver every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a database hiccup must not end the job; the next round retries
                log.exception("message round failed")
            stop.wait(interval_s)
