"""The virtual card behaves as the protocol page says a real card must."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from reader_agent import apdu, protocol
from reader_agent.apdu import CardRefusedError, StatusWord
from reader_agent.card import CardApplication
from reader_agent.protocol import BalanceCertificate, CardCertificate, HolderType
from reader_agent.virtual_card.applet import Applet
from reader_agent.virtual_card.state import CardStateError, CardStore
from reader_agent.virtual_card.vpcd import ATR, CTRL_ATR, CTRL_RESET, VpcdCard

CHALLENGE = bytes(range(16))


class AppletTransport:
    """Test double of the PC/SC port: hands APDU bytes straight to the applet."""

    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def transmit(self, command: bytes) -> bytes:
        return self.applet.process(command)


@pytest.fixture
def store(tmp_path: Path) -> CardStore:
    return CardStore(tmp_path / "cards")


@pytest.fixture
def applet(store: CardStore) -> Applet:
    return Applet(store.personalise("FAM-0001", HolderType.FAMILY), store.save)


@pytest.fixture
def card(applet: Applet) -> CardApplication:
    application = CardApplication(AppletTransport(applet))
    application.select()
    return application


def _refusal(call) -> StatusWord | None:  # type: ignore[no-untyped-def]
    with pytest.raises(CardRefusedError) as refused:
        call()
    return refused.value.status


def test_nothing_but_select_works_before_selection(applet: Applet) -> None:
    fresh = CardApplication(AppletTransport(applet))
    assert _refusal(fresh.info) is StatusWord.NOT_SELECTED
    assert applet.process(apdu.select_applet(b"\xa0\x00\x00\x00\x03").to_bytes()) == bytes.fromhex("6A82")


def test_card_info_names_the_card(card: CardApplication, applet: Applet) -> None:
    info = card.info()
    assert info.serial == "FAM-0001"
    assert info.holder_type is HolderType.FAMILY
    assert info.version == protocol.PROTOCOL_VERSION
    assert info.public_key == applet.state.public_key


def test_internal_authenticate_verifies_and_the_counter_grows(card: CardApplication) -> None:
    info = card.info()
    first = card.authenticate(CHALLENGE)
    second = card.authenticate(CHALLENGE)
    assert second.counter == first.counter + 1 > info.counter
    for answer in (first, second):
        message = protocol.auth_message(CHALLENGE, info.serial, answer.counter)
        assert protocol.verify_card_signature(info.public_key, message, answer.signature)


def test_counter_survives_removal(store: CardStore, card: CardApplication) -> None:
    last = card.authenticate(CHALLENGE).counter
    reloaded = CardApplication(AppletTransport(Applet(store.load("FAM-0001"), store.save)))
    reloaded.select()
    assert reloaded.authenticate(CHALLENGE).counter == last + 1


def test_sign_transaction_signs_the_digest_with_the_next_counter(card: CardApplication) -> None:
    info = card.info()
    tap = card.authenticate(CHALLENGE)
    digest = protocol.transaction_digest("0b7e7f0e-5a8c-4b8e-9d2a-2f1f3c4d5e6f", "gasoline", 20_000, "ST-1")
    signed = card.sign_transaction(digest)
    assert signed.counter == tap.counter + 1
    message = protocol.transaction_message(digest, info.serial, signed.counter)
    assert protocol.verify_card_signature(info.public_key, message, signed.signature)


def test_errors_have_their_own_status_words(applet: Applet, card: CardApplication) -> None:
    assert applet.process(bytes.fromhex("80FF0000")) == bytes.fromhex("6D00")
    assert applet.process(bytes.fromhex("00CA000000")) == bytes.fromhex("6E00")
    assert applet.process(bytes.fromhex("0088000003010203")) == bytes.fromhex("6700")
    assert applet.process(bytes.fromhex("00880100" + "10" + "00" * 16)) == bytes.fromhex("6B00")
    assert applet.process(bytes.fromhex("00A4")) == bytes.fromhex("6700")
    assert card.read_card_certificate() is None
    assert card.read_balance(1) is None


def test_card_certificate_is_stored_only_for_this_card(card: CardApplication, applet: Applet) -> None:
    issuer = protocol.generate_private_key()
    today = dt.date(2026, 11, 27)
    mine = protocol.issue_card_certificate(
        issuer, CardCertificate("FAM-0001", HolderType.FAMILY, applet.state.public_key, today)
    )
    other_key = protocol.public_key_bytes(protocol.generate_private_key())
    theirs = protocol.issue_card_certificate(
        issuer, CardCertificate("FAM-0001", HolderType.FAMILY, other_key, today)
    )
    assert _refusal(lambda: card.write_card_certificate(theirs)) is StatusWord.CERTIFICATE_NOT_FOR_THIS_CARD
    assert _refusal(lambda: card.write_card_certificate(b"\xe1\x01\x00")) is StatusWord.WRONG_DATA
    card.write_card_certificate(mine)
    stored = card.read_card_certificate()
    assert stored is not None
    assert protocol.verify_card_certificate(issuer.public_key(), stored[0]).serial == "FAM-0001"


def test_offline_spent_grows_up_to_the_ceiling_and_resets_with_a_new_certificate(
    card: CardApplication,
) -> None:
    backend = protocol.generate_private_key()
    until = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    cert = protocol.issue_balance_certificate(
        backend, BalanceCertificate("FAM-0001", "gasoline", 40_000, until, 3)
    )
    card.write_balance(2, cert)
    assert card.increase_spent(2, 25_000) == 25_000
    assert _refusal(lambda: card.increase_spent(2, 15_001)) is StatusWord.OFFLINE_CEILING_EXCEEDED
    assert card.increase_spent(2, 15_000) == 40_000
    record = card.read_balance(2)
    assert record is not None and record.spent_qty == 40_000
    assert protocol.verify_balance_certificate(backend.public_key(), record.certificate).ceiling_qty == 40_000
    card.write_balance(2, cert)
    assert card.read_balances()[2].spent_qty == 0
    foreign = protocol.issue_balance_certificate(
        backend, BalanceCertificate("FAM-0002", "gasoline", 1, until, 1)
    )
    assert _refusal(lambda: card.write_balance(3, foreign)) is StatusWord.CERTIFICATE_NOT_FOR_THIS_CARD


def test_state_file_refuses_overwrite_and_bad_serials(store: CardStore, applet: Applet) -> None:
    with pytest.raises(CardStateError):
        store.personalise("FAM-0001", HolderType.FAMILY)
    with pytest.raises(CardStateError):
        store.personalise("../etc", HolderType.FAMILY)
    assert oct(store.path("FAM-0001").stat().st_mode & 0o777) == "0o600"


def test_vpcd_controls_answer_atr_and_reset_deselects(applet: Applet) -> None:
    card = VpcdCard(applet)
    assert card.handle(bytes([CTRL_ATR])) == ATR
    assert card.handle(apdu.select_applet().to_bytes()) == bytes.fromhex("6F0B8409F053434C454447455290 00")
    assert card.handle(bytes([CTRL_RESET])) is None
    assert card.handle(apdu.get_card_info().to_bytes()) == bytes.fromhex("6985")


def test_atr_checksum_is_valid() -> None:
    check = 0
    for byte in ATR[1:]:
        check ^= byte
    assert ATR[0] == 0x3B and check == 0
