"""Command bytes as the protocol page fixes them, and parsers that refuse bad cards."""

from __future__ import annotations

import pytest

from reader_agent import apdu, protocol, tlv
from reader_agent.apdu import CardRefusedError, MalformedResponseError, StatusWord


def test_select_is_the_iso_command_with_the_ledger_aid() -> None:
    assert apdu.select_applet().to_bytes().hex().upper() == "00A4040009F053434C454447455200"


def test_fixed_command_headers() -> None:
    assert apdu.get_card_info().to_bytes() == bytes.fromhex("80CA000000")
    assert apdu.internal_authenticate(b"\xaa" * 16).to_bytes()[:5] == bytes.fromhex("0088000010")
    assert apdu.sign_transaction(b"\x00" * 32).to_bytes()[:5] == bytes.fromhex("802A000020")
    assert apdu.read_record(apdu.SFI_BALANCE, 3).to_bytes() == bytes.fromhex("00B2031400")
    assert apdu.update_record(apdu.SFI_CARD_CERTIFICATE, 1, b"\x01").to_bytes() == bytes.fromhex(
        "00DC010C0101"
    )
    assert apdu.increase_spent(2, 500).to_bytes() == bytes.fromhex("80320200040000" + "01F4" + "00")


def test_builders_refuse_values_the_card_would_refuse() -> None:
    with pytest.raises(ValueError):
        apdu.internal_authenticate(b"short")
    with pytest.raises(ValueError):
        apdu.sign_transaction(b"\x00" * 31)
    with pytest.raises(ValueError):
        apdu.increase_spent(1, 0)


def test_command_parser_reads_all_four_cases() -> None:
    assert apdu.parse_command(bytes.fromhex("80CA0000")) == apdu.CommandApdu(0x80, 0xCA, 0, 0)
    assert apdu.parse_command(bytes.fromhex("80CA000000")).le == 0
    case3 = apdu.parse_command(bytes.fromhex("00DC010C0201 02".replace(" ", "")))
    assert case3.data == b"\x01\x02" and case3.le is None
    case4 = apdu.parse_command(apdu.select_applet().to_bytes())
    assert case4.data == protocol.AID and case4.le == 0


def test_status_word_other_than_9000_is_a_named_refusal() -> None:
    with pytest.raises(CardRefusedError) as refused:
        apdu.expect_ok(bytes.fromhex("6A84"))
    assert refused.value.status is StatusWord.OFFLINE_CEILING_EXCEEDED
    with pytest.raises(CardRefusedError) as unknown:
        apdu.expect_ok(bytes.fromhex("6F12"))
    assert unknown.value.status is None and unknown.value.sw == 0x6F12


def test_response_without_status_word_is_malformed() -> None:
    for raw in (b"", b"\x90"):
        with pytest.raises(MalformedResponseError):
            apdu.expect_ok(raw)


def test_card_info_parser_checks_every_field() -> None:
    key = protocol.public_key_bytes(protocol.generate_private_key())
    good = [
        (protocol.TAG_SERIAL, b"FAM-1"),
        (protocol.TAG_HOLDER_TYPE, b"\x01"),
        (protocol.TAG_VERSION, b"\x01"),
        (protocol.TAG_COUNTER, (5).to_bytes(4, "big")),
        (protocol.TAG_PUBLIC_KEY, key),
    ]
    info = apdu.parse_card_info(tlv.encode_all(good))
    assert (info.serial, info.holder_type, info.counter) == ("FAM-1", protocol.HolderType.FAMILY, 5)
    broken = [
        good[:4],  # no key
        [*good[:3], (protocol.TAG_COUNTER, b"\x05"), good[4]],  # short counter
        [(protocol.TAG_SERIAL, b"\xff\xfe"), *good[1:]],  # not ASCII
        [good[0], (protocol.TAG_HOLDER_TYPE, b"\x09"), *good[2:]],  # unknown holder
        [*good[:4], (protocol.TAG_PUBLIC_KEY, b"\x04" + b"\x00" * 64)],  # not on the curve
        [*good, good[0]],  # duplicated tag
    ]
    for items in broken:
        with pytest.raises(MalformedResponseError):
            apdu.parse_card_info(tlv.encode_all(items))


def test_signed_counter_is_exactly_68_bytes() -> None:
    answer = apdu.parse_signed_counter((9).to_bytes(4, "big") + b"\x11" * 64)
    assert answer.counter == 9 and answer.signature == b"\x11" * 64
    for size in (0, 4, 67, 69):
        with pytest.raises(MalformedResponseError):
            apdu.parse_signed_counter(b"\x00" * size)
