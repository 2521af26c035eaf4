"""The agent's outbox keeps every redemption id from before sending to its final state; receipts are
bilingual and thermal-width; the offline checks accept genuine cards and allowances only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reader_agent import apdu, protocol
from reader_agent.apdu import BalanceRecord, CardInfo
from reader_agent.offline import LocalCheckFailed, check_answer, check_card_certificate, genuine_balances
from reader_agent.outbox import Outbox
from reader_agent.protocol import BalanceCertificate, CardCertificate, HolderType
from reader_agent.receipt import LRM, WIDTH, Catalogue, ProductName, ReceiptData, render

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def test_outbox_survives_reopening_and_tracks_state(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    box = Outbox(path)
    box.create("r1", "F1", "sugar", 1000, "P1", "online")
    box.close()
    reopened = Outbox(path)
    assert [e.id for e in reopened.entries("created")] == ["r1"]
    reopened.signed("r1", 7, b"\x01" * 64)
    reopened.mark("r1", "offline", "ok", mode="offline")
    entry = reopened.get("r1")
    assert entry is not None and (entry.state, entry.mode, entry.counter) == ("offline", "offline", 7)
    with pytest.raises(ValueError):
        reopened.mark("r1", "lost")
    assert reopened.counts() == {"offline": 1}


def test_outbox_refuses_a_second_row_with_the_same_id(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.create("r1", "F1", "sugar", 1000, "P1", "online")
    with pytest.raises(Exception, match="UNIQUE"):
        box.create("r1", "F1", "sugar", 5, "P1", "online")


def test_last_counter_only_grows(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.see_counter("F1", 9)
    box.see_counter("F1", 4)
    assert box.last_counter("F1") == 9 and box.last_counter("F2") == 0


def test_receipt_is_bilingual_and_marks_offline_and_refusals() -> None:
    sugar = Catalogue({"sugar": ProductName("سكر", "Sugar", "g")}, "Asia/Damascus")
    data = ReceiptData(
        "P1", "F000001", "sugar", 1000, "ok", "0b7e7f0e-5a8c-4b8e-9d2a-2f1f3c4d5e6f", 4000, True, NOW
    )
    text = render(data, sugar)
    assert "إيصال صرف / Redemption receipt" in text and "OFFLINE" in text and "تمت العملية" in text
    # Local time in the deployment's zone (12:00 UTC is 15:00 in Damascus), quantities in kg, names.
    assert "Date: 2026-11-27 15:00 Asia/Damascus" in text and "UTC" not in text
    assert "Product: Sugar" in text and "المادة: سكر" in text
    assert "Quantity: 1 kg" in text and "Remaining: 4 kg" in text and "المتبقي: ٤ كغ" in text
    assert all(len(line.strip(LRM)) <= WIDTH for line in text.splitlines())
    refused = render(
        ReceiptData("P1", "F1", "sugar", 6000, "exceeds_allowance", "r", None, False, NOW), sugar
    )
    assert "Quantity: 0 kg" in refused and "تجاوز المخصص" in refused and "OFFLINE" not in refused


def _card() -> tuple[ec.EllipticCurvePrivateKey, CardInfo]:
    key = protocol.generate_private_key()
    info = CardInfo("F1", HolderType.FAMILY, 1, 0, protocol.public_key_bytes(key))
    return key, info


def test_offline_card_check_needs_the_issuers_certificate_for_this_key() -> None:
    issuer = protocol.generate_private_key()
    _, info = _card()
    good = protocol.issue_card_certificate(
        issuer, CardCertificate("F1", HolderType.FAMILY, info.public_key, NOW.date())
    )
    check_card_certificate(issuer.public_key(), info, good)
    other = protocol.issue_card_certificate(
        issuer,
        CardCertificate(
            "F1", HolderType.FAMILY, protocol.public_key_bytes(protocol.generate_private_key()), NOW.date()
        ),
    )
    for blob in (None, other, good[:-1]):
        with pytest.raises(LocalCheckFailed) as failed:
            check_card_certificate(issuer.public_key(), info, blob)
        assert failed.value.code == "card_auth_failed"
    with pytest.raises(LocalCheckFailed):
        check_card_certificate(protocol.generate_private_key().public_key(), info, good)


def test_offline_answer_check_refuses_forgeries_and_old_counters() -> None:
    key, info = _card()
    challenge = b"\x05" * 16
    signature = protocol.sign(key, protocol.auth_message(challenge, "F1", 8))
    check_answer(info, challenge, 8, signature, last_seen=7)
    with pytest.raises(LocalCheckFailed) as replay:
        check_answer(info, challenge, 8, signature, last_seen=8)
    assert replay.value.code == "counter_replayed"
    with pytest.raises(LocalCheckFailed) as forged:
        check_answer(info, challenge, 9, signature, last_seen=0)
    assert forged.value.code == "card_auth_failed"


def test_only_genuine_current_balances_for_this_card_count() -> None:
    signer = protocol.generate_private_key()

    def record(
        serial: str, product: str, until: dt.datetime, key: ec.EllipticCurvePrivateKey
    ) -> BalanceRecord:
        blob = protocol.issue_balance_certificate(key, BalanceCertificate(serial, product, 2500, until, 3))
        return apdu.parse_balance_record(blob + bytes.fromhex("CB0400000064"))

    later, earlier = NOW + dt.timedelta(hours=1), NOW - dt.timedelta(hours=1)
    records = {
        1: record("F1", "sugar", later, signer),
        2: record("F1", "rice", earlier, signer),  # expired
        3: record("F2", "tea", later, signer),  # another card's
        4: record("F1", "oil", later, protocol.generate_private_key()),  # not the backend's
    }
    found = genuine_balances(signer.public_key(), "F1", records, NOW)
    assert list(found) == ["sugar"] and found["sugar"].left_qty == 2400 and found["sugar"].record == 1
    assert genuine_balances(None, "F1", records, NOW) == {}
