"""The point's service flow: tap → authenticate → quota → confirm → card signs → redeem → receipt.

Online, the backend issues the challenge and checks the answer, and every debit carries the card's
signature over that very transaction. When the backend is unreachable the agent checks the card
itself (offline.py) and serves within the balance certificate on the card: the card counts what it
spent and refuses past the ceiling; the signed debit waits in the outbox for `sync()`. The outbox
row is written before the card is asked to sign, and a card that leaves before signing leaves an
``abandoned`` row and no debit anywhere.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reader_agent import protocol, receipt
from reader_agent.apdu import BalanceRecord, CardError, CardInfo, CardRefusedError, MalformedResponseError
from reader_agent.card import CardApplication
from reader_agent.client import BackendClient, BackendRefused, BackendUnavailable
from reader_agent.offline import (
    Balance,
    LocalCheckFailed,
    check_answer,
    check_card_certificate,
    genuine_balances,
)
from reader_agent.outbox import Outbox
from reader_agent.receipt import ReceiptData, render

MAX_SYNC_ROUNDS = 1000


class Closable(Protocol):
    def close(self) -> None: ...


CardOpener = Callable[[str], tuple[Closable, CardApplication]]


class TapRefused(Exception):
    def __init__(self, code: str, detail: object = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class Tap:
    reader_name: str
    transport: Closable
    card: CardApplication
    info: CardInfo
    online: bool
    quota: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[str, Balance] = field(default_factory=dict)
    records: dict[int, BalanceRecord] = field(default_factory=dict)  # as last read or written

    def close(self) -> None:
        self.transport.close()


@dataclass(frozen=True)
class RedeemResult:
    redemption_id: str
    result: str
    offline: bool
    quantity_qty: int = 0
    remaining_qty: int | None = None
    receipt: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "ok"


def _card_error_code(exc: CardError) -> str:
    """A card that answers nonsense is not a card that left: say which, for the clerk and the logs."""
    if isinstance(exc, MalformedResponseError):
        return "card_malformed"
    if isinstance(exc, CardRefusedError):
        return "card_refused"
    return "card_removed"


def _signed_by_card(info: CardInfo, digest: bytes, counter: int, signature: bytes) -> bool:
    """Offline nobody else checks the card's signature before the goods leave: a garbled or replayed
    answer would be served and only found at sync, as a conflict with its amount at risk."""
    message = protocol.transaction_message(digest, info.serial, counter)
    return protocol.verify_card_signature(info.public_key, message, signature)


def _default_opener(reader_name: str) -> tuple[Closable, CardApplication]:
    from reader_agent.reader import open_card

    return open_card(reader_name)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PointAgent:
    def __init__(
        self,
        client: BackendClient,
        outbox: Outbox,
        point_code: str,
        *,
        open_card: CardOpener = _default_opener,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.point_code = point_code
        self.open_card = open_card
        self.clock = clock
        # What a previous run left unfinished (a crash, a power cut): never handed over, so never owed.
        self.recovered = outbox.recover()
        # Product names, units and the zone for receipts: from the last online tap, kept for offline ones.
        self.catalogue = receipt.recall(outbox)

    # -- keys ------------------------------------------------------------------------------

    def load_keys(self) -> bool:
        """Fetch and cache the public keys; False if neither the backend nor the cache has them."""
        try:
            keys = self.client.public_keys()
            self.outbox.set_setting("issuer_public_key_pem", keys["issuer_public_key_pem"])
            self.outbox.set_setting("certificate_public_key_pem", keys["certificate_public_key_pem"])
        except (BackendUnavailable, BackendRefused):
            pass
        return self._key("issuer_public_key_pem") is not None

    def _key(self, name: str) -> ec.EllipticCurvePublicKey | None:
        pem = self.outbox.setting(name)
        if pem is None:
            return None
        key = serialization.load_pem_public_key(pem.encode("ascii"))
        return key if isinstance(key, ec.EllipticCurvePublicKey) else None

    # -- tap -------------------------------------------------------------------------------

    def tap(self, reader_name: str) -> Tap:
        """Open the card in the reader and authenticate it (online if possible, else locally)."""
        try:
            transport, card = self.open_card(reader_name)
        except CardError as exc:
            raise TapRefused(_card_error_code(exc), str(exc)) from exc
        try:
            info = card.info()
            tap = Tap(reader_name, transport, card, info, online=True)
            try:
                self._tap_online(tap)
            except BackendUnavailable:
                tap.online = False
                self._tap_offline(tap)
            return tap
        except CardError as exc:
            transport.close()
            raise TapRefused(_card_error_code(exc), str(exc)) from exc
        except BaseException:
            transport.close()
            raise

    def _tap_online(self, tap: Tap) -> None:
        challenge = self.client.challenge()
        answer = tap.card.authenticate(bytes.fromhex(challenge["challenge_hex"]))
        tap.records = tap.card.read_balances()
        reported = [(r.certificate, r.spent_qty) for r in tap.records.values() if r.spent_qty > 0]
        try:
            verified = self.client.verify(
                challenge["challenge_id"], tap.info.serial, answer.counter, answer.signature, reported
            )
        except BackendRefused as exc:
            raise TapRefused(exc.code, exc.detail) from exc
        self.outbox.see_counter(tap.info.serial, answer.counter)
        self.catalogue = receipt.remember(self.outbox, verified)
        tap.quota = list(verified["quota"])
        for cert in verified["balance_certificates"]:
            self._write_balance(tap, tap.records, bytes.fromhex(cert["certificate_hex"]))
        tap.balances = genuine_balances(
            self._key("certificate_public_key_pem"), tap.info.serial, tap.records, self.clock()
        )

    def _tap_offline(self, tap: Tap) -> None:
        issuer = self._key("issuer_public_key_pem")
        if issuer is None:
            raise TapRefused("offline_not_allowed", "no issuer key cached: this agent was never online")
        try:
            stored = tap.card.read_card_certificate()
            check_card_certificate(issuer, tap.info, stored[0] if stored else None)
            challenge = secrets.token_bytes(16)
            answer = tap.card.authenticate(challenge)
            check_answer(
                tap.info,
                challenge,
                answer.counter,
                answer.signature,
                self.outbox.last_counter(tap.info.serial),
            )
        except LocalCheckFailed as exc:
            raise TapRefused(exc.code, str(exc)) from exc
        self.outbox.see_counter(tap.info.serial, answer.counter)
        tap.records = tap.card.read_balances()
        tap.balances = genuine_balances(
            self._key("certificate_public_key_pem"), tap.info.serial, tap.records, self.clock()
        )

    @staticmethod
    def _write_balance(tap: Tap, records: dict[int, BalanceRecord], blob: bytes) -> None:
        """Put a fresh certificate in the product's record (or a free one, or the oldest).

        `records` mirrors the card so a tap reads the eight records once, not once per certificate."""
        product = protocol.decode_balance_certificate(blob).product_code
        same = [r for r, b in records.items() if b.decoded.product_code == product]
        free = [r for r in range(1, 9) if r not in records]
        target = (same or free or [min(records, key=lambda r: records[r].decoded.valid_until)])[0]
        tap.card.write_balance(target, blob)
        records[target] = BalanceRecord(blob, protocol.decode_balance_certificate(blob), 0)

    # -- redeem ----------------------------------------------------------------------------

    def redeem(self, tap: Tap, product_code: str, quantity_qty: int) -> RedeemResult:
        rid = str(uuid.uuid4())
        mode = "online" if tap.online else "offline"
        self.outbox.create(rid, tap.info.serial, product_code, quantity_qty, self.point_code, mode)
        if not tap.online:
            return self._serve_offline(tap, rid, product_code, quantity_qty, signed=None)
        digest = protocol.transaction_digest(rid, product_code, quantity_qty, self.point_code)
        try:
            signed = tap.card.sign_transaction(digest)
        except CardError as exc:  # nothing was signed: nothing to debit; say whether the card left
            return self._finish(
                tap, rid, product_code, quantity_qty, "abandoned", _card_error_code(exc), offline=False
            )
        self.outbox.signed(rid, signed.counter, signed.signature)
        self.outbox.see_counter(tap.info.serial, signed.counter)
        try:
            answer = self.client.redeem(
                self._item(rid, tap.info.serial, product_code, quantity_qty, signed.counter, signed.signature)
            )
        except BackendRefused as exc:
            return self._finish(
                tap, rid, product_code, quantity_qty, "refused", exc.code, offline=False,
                remaining_qty=receipt.remaining_of(exc.detail), possible_at=receipt.possible_at(exc.detail),
            )
        except BackendUnavailable:
            # The answer is lost: the backend may have debited. Serve offline if the card allows; if
            # nothing is handed over after all, the debit is in doubt and sync sends reversal advice.
            served = self._serve_offline(
                tap, rid, product_code, quantity_qty, signed=(signed.counter, signed.signature)
            )
            if served.result != "ok":
                self.outbox.mark(rid, "in_doubt")
            return served
        certificate = answer.get("balance_certificate")
        if certificate:
            # If the card left just now the debit stands; the card keeps its older offline allowance.
            with contextlib.suppress(CardError):
                self._write_balance(tap, tap.records, bytes.fromhex(certificate["certificate_hex"]))
        return self._finish(
            tap,
            rid,
            product_code,
            quantity_qty,
            "sent",
            "ok",
            offline=False,
            remaining_qty=answer.get("remaining_qty"),
        )

    def _serve_offline(
        self, tap: Tap, rid: str, product: str, qty: int, *, signed: tuple[int, bytes] | None
    ) -> RedeemResult:
        balance = tap.balances.get(product)
        if balance is None or balance.certificate.valid_until <= self.clock():
            return self._finish(tap, rid, product, qty, "refused", "offline_not_allowed", offline=True)
        if qty > balance.left_qty:
            return self._finish(tap, rid, product, qty, "refused", "exceeds_offline_ceiling", offline=True)
        digest = protocol.transaction_digest(rid, product, qty, self.point_code)
        try:
            balance.spent_qty = tap.card.increase_spent(balance.record, qty)
            if signed is None:
                answer = tap.card.sign_transaction(digest)
                if not _signed_by_card(tap.info, digest, answer.counter, answer.signature):
                    return self._finish(tap, rid, product, qty, "refused", "card_auth_failed", offline=True)
                signed = (answer.counter, answer.signature)
                self.outbox.signed(rid, *signed)
                self.outbox.see_counter(tap.info.serial, answer.counter)
            elif not _signed_by_card(tap.info, digest, *signed):
                return self._finish(tap, rid, product, qty, "refused", "card_auth_failed", offline=True)
        except CardRefusedError:
            return self._finish(tap, rid, product, qty, "refused", "exceeds_offline_ceiling", offline=True)
        except CardError as exc:
            return self._finish(tap, rid, product, qty, "abandoned", _card_error_code(exc), offline=True)
        return self._finish(
            tap, rid, product, qty, "offline", "ok", offline=True, remaining_qty=balance.left_qty
        )

    def _finish(
        self,
        tap: Tap,
        rid: str,
        product: str,
        qty: int,
        state: str,
        result: str,
        *,
        offline: bool,
        remaining_qty: int | None = None,
        possible_at: dt.datetime | None = None,
    ) -> RedeemResult:
        self.outbox.mark(rid, state, result, mode="offline" if offline else None)
        text = render(
            ReceiptData(
                self.point_code,
                tap.info.serial,
                product,
                qty,
                result,
                rid,
                remaining_qty,
                offline,
                self.clock(),
                possible_at,
            ),
            self.catalogue,
        )
        return RedeemResult(rid, result, offline, qty if result == "ok" else 0, remaining_qty, text)

    def _item(
        self, rid: str, serial: str, product: str, qty: int, counter: int, signature: bytes
    ) -> dict[str, Any]:
        return {
            "id": rid,
            "card_serial": serial,
            "product_code": product,
            "quantity_qty": qty,
            "point_code": self.point_code,
            "counter": counter,
            "signature_hex": signature.hex(),
        }

    # -- recovery and sync -------------------------------------------------------------------

    def _advise_undelivered(self, done: dict[str, int]) -> bool:
        """Reversal advice for every debit in doubt; False while the backend is unreachable."""
        for entry in self.outbox.entries("in_doubt"):
            try:
                answer = self.client.undelivered(entry.id)
                state, result = "undone", "reversed" if answer["result"] == "ok" else str(answer["result"])
            except BackendUnavailable:
                return False
            except BackendRefused as exc:  # not_debited: nothing to undo; otherwise a supervisor's case
                state, result = ("undone", exc.code) if exc.code == "not_debited" else ("conflict", exc.code)
            self.outbox.mark(entry.id, state, result)
            done[state] = done.get(state, 0) + 1
        return True

    def sync(self, batch: int = 200) -> dict[str, int]:
        """Undo debits in doubt (reversal advice), then send what was served offline."""
        done: dict[str, int] = {}
        if not self._advise_undelivered(done):
            return done
        for _ in range(MAX_SYNC_ROUNDS):
            entries = self.outbox.entries("offline", limit=batch)
            if not entries:
                break
            items = []
            for e in entries:
                assert e.counter is not None and e.signature is not None
                item = self._item(e.id, e.card_serial, e.product_code, e.quantity_qty, e.counter, e.signature)
                items.append({**item, "happened_at": e.created_at.isoformat()})
            try:
                results = self.client.sync(items)
            except BackendUnavailable:
                break
            except BackendRefused as exc:
                raise TapRefused(exc.code, exc.detail) from exc
            for result in results:
                state = "synced" if result["status"] == "posted" else "conflict"
                self.outbox.mark(result["id"], state, result["result"])
                done[state] = done.get(state, 0) + 1
        return done
