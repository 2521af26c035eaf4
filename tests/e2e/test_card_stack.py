"""The virtual card through the real pcscd + vpcd stack, as the agent and third-party tools see it."""

from __future__ import annotations

import subprocess

import pytest

from reader_agent import protocol
from reader_agent.monitor import CardEvent, ReaderWatcher
from reader_agent.reader import CardRemovedError, PcscTransport
from reader_agent.virtual_card.vpcd import ATR
from tests.e2e.conftest import Cards
from tests.e2e.pcsc import PcscHarness, open_card_when_present

CHALLENGE = bytes(range(16))
SELECT_HEX = "00 A4 04 00 09 " + " ".join(f"{b:02X}" for b in protocol.AID) + " 00"
GET_CARD_INFO_HEX = "80 CA 00 00 00"


def test_pyscard_sees_the_card_in_virtual_pcd_00_00(pcsc: PcscHarness, cards: Cards) -> None:
    reader = pcsc.reader(0)
    assert reader.name == "Virtual PCD 00 00"
    cards.personalise("FAM-0001")
    cards.insert("FAM-0001", reader)
    transport, card = open_card_when_present(reader.name)
    with transport:
        assert transport.atr == ATR
        info = card.info()
    assert info.serial == "FAM-0001"


def test_tap_verifies_with_the_card_public_key_and_the_counter_grows(pcsc: PcscHarness, cards: Cards) -> None:
    reader = pcsc.reader(0)
    cards.personalise("FAM-0002")
    cards.insert("FAM-0002", reader)
    transport, card = open_card_when_present(reader.name)
    with transport:
        info = card.info()
        answers = [card.authenticate(CHALLENGE) for _ in range(3)]
    counters = [answer.counter for answer in answers]
    assert counters == sorted(set(counters)) and counters[0] > info.counter
    for answer in answers:
        message = protocol.auth_message(CHALLENGE, info.serial, answer.counter)
        assert protocol.verify_card_signature(info.public_key, message, answer.signature)


def test_counter_keeps_growing_after_the_card_is_pulled_and_reinserted(
    pcsc: PcscHarness, cards: Cards
) -> None:
    reader = pcsc.reader(0)
    cards.personalise("FAM-0003")
    first = cards.insert("FAM-0003", reader)
    transport, card = open_card_when_present(reader.name)
    with transport:
        before = card.authenticate(CHALLENGE).counter
    first.remove()
    cards.insert("FAM-0003", reader)
    transport, card = open_card_when_present(reader.name)
    with transport:
        after = card.authenticate(CHALLENGE).counter
    assert after == before + 1


def test_a_clone_with_the_same_serial_and_another_key_fails_verification(
    pcsc: PcscHarness, cards: Cards
) -> None:
    reader = pcsc.reader(0)
    genuine = cards.personalise("FAM-0004").load("FAM-0004")
    cards.personalise("FAM-0004", store="clone")
    cards.insert("FAM-0004", reader, store="clone")
    transport, card = open_card_when_present(reader.name)
    with transport:
        info = card.info()
        answer = card.authenticate(CHALLENGE)
    assert info.serial == genuine.serial
    message = protocol.auth_message(CHALLENGE, info.serial, answer.counter)
    assert protocol.verify_card_signature(info.public_key, message, answer.signature)  # self-consistent
    assert not protocol.verify_card_signature(genuine.public_key, message, answer.signature)


def test_scriptor_can_select_and_get_card_info(pcsc: PcscHarness, cards: Cards) -> None:
    reader = pcsc.reader(0)
    cards.personalise("FAM-0005")
    cards.insert("FAM-0005", reader)
    open_card_when_present(reader.name)[0].close()
    script = f"{SELECT_HEX}\n{GET_CARD_INFO_HEX}\n"
    result = subprocess.run(
        ["scriptor", "-r", reader.name], input=script, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.splitlines() if line.startswith("<")]
    assert answers[0].endswith("90 00 : Normal processing.")
    serial_hex = " ".join(f"{b:02X}" for b in b"FAM-0005")
    assert f"C1 08 {serial_hex}" in result.stdout.replace("\n", " ")
    assert result.stdout.rstrip().endswith("90 00 : Normal processing.")


def test_opensc_tool_can_select_and_get_card_info(pcsc: PcscHarness, cards: Cards) -> None:
    reader = pcsc.reader(0)
    cards.personalise("FAM-0006")
    cards.insert("FAM-0006", reader)
    open_card_when_present(reader.name)[0].close()
    result = subprocess.run(
        ["opensc-tool", "-r", reader.name, "-s", SELECT_HEX.replace(" ", ":"), "-s", "80:CA:00:00:00"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Received (SW1=0x90, SW2=0x00)") == 2
    assert "SCLEDGER" in result.stdout and "FAM-0006" in result.stdout


def test_monitor_sees_a_card_plugged_into_a_second_reader_and_pulled_out(
    pcsc: PcscHarness, cards: Cards
) -> None:
    reader = pcsc.reader(1)
    assert reader.name == "Virtual PCD 00 01"
    cards.personalise("FAM-0007")
    with ReaderWatcher() as watcher:
        card = cards.insert("FAM-0007", reader)
        inserted = watcher.wait_for(
            lambda e: isinstance(e, CardEvent) and e.kind == "inserted" and e.reader == reader.name, 15
        )
        assert inserted is not None and isinstance(inserted, CardEvent) and inserted.atr == ATR
        card.remove()
        removed = watcher.wait_for(
            lambda e: isinstance(e, CardEvent) and e.kind == "removed" and e.reader == reader.name, 15
        )
        assert removed is not None


def test_two_readers_serve_two_cards_at_once(pcsc: PcscHarness, cards: Cards) -> None:
    first, second = pcsc.reader(0), pcsc.reader(1)
    cards.personalise("FAM-0008")
    cards.personalise("VEH-0009", protocol.HolderType.VEHICLE)
    cards.insert("FAM-0008", first)
    cards.insert("VEH-0009", second)
    transport_a, card_a = open_card_when_present(first.name)
    transport_b, card_b = open_card_when_present(second.name)
    with transport_a, transport_b:
        info_a, info_b = card_a.info(), card_b.info()
        tap_a, tap_b = card_a.authenticate(CHALLENGE), card_b.authenticate(CHALLENGE)
    assert (info_a.serial, info_b.serial) == ("FAM-0008", "VEH-0009")
    assert info_b.holder_type is protocol.HolderType.VEHICLE
    assert protocol.verify_card_signature(
        info_a.public_key, protocol.auth_message(CHALLENGE, "FAM-0008", tap_a.counter), tap_a.signature
    )
    assert protocol.verify_card_signature(
        info_b.public_key, protocol.auth_message(CHALLENGE, "VEH-0009", tap_b.counter), tap_b.signature
    )


def test_card_pulled_mid_exchange_is_a_named_error(pcsc: PcscHarness, cards: Cards) -> None:
    reader = pcsc.reader(0)
    cards.personalise("FAM-0010")
    card_in_reader = cards.insert("FAM-0010", reader)
    transport, card = open_card_when_present(reader.name)
    with transport:
        card.info()
        card_in_reader.remove()
        with pytest.raises(CardRemovedError):
            card.authenticate(CHALLENGE)


def test_connecting_to_an_empty_reader_is_a_named_error(pcsc: PcscHarness) -> None:
    from reader_agent.reader import CardAbsentError

    with pytest.raises(CardAbsentError):
        PcscTransport(pcsc.reader(1).name)
