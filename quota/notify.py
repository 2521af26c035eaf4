"""A message to the family on every debit, read from the journal (invariant 8).

The journal is the outbox: ``collect`` reads journal entries of debit kinds after the sender's saved
position (``message_cursors``), renders an Arabic and an English text, stores one ``messages`` row per
entry and channel (unique), and advances the position in the same transaction — nothing is added to
the redemption's hot path, and a committed debit is queued exactly once. ``deliver`` sends due
messages; a failure is kept with its error and retried with capped back-off, forever: when the SMS
gateway is down nothing is lost, the messages wait. Senders: a console/file sender (default) and an
HTTP SMS-gateway sender.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx
from sqlalchemy import Engine

from quota import ledger_repository as repo
from quota import message_repository as message_repo
from quota import seal_repository as seal_repo
from quota.redemption import utcnow

log = logging.getLogger(__name__)
DEBIT_KINDS = ("redeem", "post", "reverse", "stock_credit", "topup")
_ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
_UNITS = {"ml": ("L", "ل"), "g": ("kg", "كغ"), "piece": ("pc", "قطعة"), "bundle": ("bundle", "ربطة")}


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


def _qty(quantity: int, unit: str, per: int) -> tuple[str, str]:
    en, ar = _UNITS.get(unit, (unit, unit))
    value = f"{quantity / per:g}" if per > 1 else str(quantity)
    return f"{value} {en}", f"{value} {ar}"


def render(entry: dict[str, Any], products: dict[str, tuple[str, str, str, int]],
           points: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """(Arabic, English) text: product, quantity, point, remaining, time, receipt code."""
    name_ar, name_en, unit, per = products.get(str(entry["product_code"]), (entry["product_code"],) * 2
                                               + ("", 1))
    point_ar, point_en = points.get(str(entry["point_code"]), ("-", "-"))
    qty_en, qty_ar = _qty(abs(int(entry["quantity_qty"])), unit, per)
    rem_en, rem_ar = _qty(int(entry["remaining_qty"] or 0), unit, per)
    when = entry["created_at"].strftime("%Y-%m-%d %H:%M UTC")
    receipt = str(entry["entry_id"])[:8].upper()
    if entry["kind"] == "stock_credit":  # a debit of a closed period reversed: money back, quota not
        refund = abs(int(entry["price_minor"] or 0))
        english = (f"not handed over: {qty_en} {name_en} at {point_en}; that period has ended, so the "
                   f"quota is not credited back; refund due {refund}; {when}; receipt {receipt}")
        arabic = (f"لم تُسلَّم: {qty_ar} {name_ar} في {point_ar}؛ انتهت تلك الفترة فلا تُعاد الكمية إلى "
                  f"المخصص؛ المبلغ المستحق إعادته {refund}؛ {when}؛ الإيصال {receipt}")
        return arabic.translate(_ARABIC_DIGITS), english
    verb_en, verb_ar = {
        "redeem": ("debited", "تم صرف"), "post": ("debited", "تم صرف"),
        "reverse": ("credited back", "تمت إعادة"), "topup": ("granted extra", "تمت إضافة"),
    }[str(entry["kind"])]
    english = (f"{verb_en} {qty_en} {name_en} at {point_en}; remaining {rem_en}; {when}; "
               f"receipt {receipt}")
    arabic = (f"{verb_ar} {qty_ar} {name_ar} في {point_ar}؛ المتبقي {rem_ar}؛ {when}؛ "
              f"الإيصال {receipt}").translate(_ARABIC_DIGITS)
    return arabic, english


class Notifier:
    def __init__(self, db: Engine, sender: Sender, *, batch: int = 500, max_backoff_s: int = 300,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.sender = sender
        self.batch = batch
        self.max_backoff_s = max_backoff_s
        self.clock = clock

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
                entries = [e for e in repo.entries_after(conn, position, DEBIT_KINDS, self.batch)
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
                    text_ar, text_en = render(e, products, points)
                    rows.append({"seq": e["seq"], "channel": self.sender.channel,
                                 "recipient": to.get("phone") or "", "text_ar": text_ar, "text_en": text_en,
                                 "state": "pending" if to.get("phone") else "no_recipient", "attempts": 0,
                                 "last_error": "", "next_attempt_at": now, "created_at": now})
                message_repo.insert_messages(conn, rows)
                queued += len(rows)
                position = int(entries[-1]["seq"])
            message_repo.save_cursor(conn, cursor_name, position)
        return queued

    def deliver(self) -> tuple[int, int]:
        """Send the due messages; returns (sent, failed this round)."""
        sent = failed = 0
        now = self.clock()
        with self.db.begin() as conn:
            repo.begin_write(conn)
            for message in message_repo.due_messages(conn, self.sender.channel, now, self.batch):
                try:
                    self.sender.send(message["recipient"], f"{message['text_ar']}\n{message['text_en']}")
                except Exception as exc:  # the gateway's failure is data: kept, retried later
                    attempts = int(message["attempts"]) + 1
                    backoff = min(2**attempts, self.max_backoff_s)
                    message_repo.mark_message(
                        conn, message["id"], attempts=attempts, last_error=str(exc)[:200],
                        next_attempt_at=now + timedelta(seconds=backoff),
                    )
                    failed += 1
                else:
                    message_repo.mark_message(conn, message["id"], state="sent", sent_at=now,
                                      attempts=int(message["attempts"]) + 1)
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
