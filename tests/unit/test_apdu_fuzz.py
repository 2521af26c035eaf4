"""Issue 7's APDU fuzzer: whatever a card answers, parsing ends in a value or a named error."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reader_agent import apdu, protocol, tlv
from reader_agent.apdu import CardError

PARSERS: list[Callable[[bytes], object]] = [
    apdu.parse_card_info,
    apdu.parse_signed_counter,
    apdu.parse_card_certificate_record,
    apdu.parse_balance_record,
    apdu.parse_quantity,
    apdu.expect_ok,
]

_KEY = protocol.generate_private_key()
_BALANCE = protocol.issue_balance_certificate(
    _KEY, protocol.BalanceCertificate("FAM-1", "gasoline", 40_000, dt.datetime(2027, 1, 1, tzinfo=dt.UTC), 3)
) + tlv.encode(protocol.TAG_SPENT, (100).to_bytes(4, "big"))
_CARD_CERT = protocol.issue_card_certificate(
    _KEY,
    protocol.CardCertificate(
        "FAM-1", protocol.HolderType.FAMILY, protocol.public_key_bytes(_KEY), dt.date(2026, 1, 1)
    ),
)


def _parse_everything(raw: bytes) -> None:
    for parser in PARSERS:
        with contextlib.suppress(CardError):
            parser(raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_card_errors(raw: bytes) -> None:
    _parse_everything(raw)


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Valid answers with bytes flipped, cut or inserted: the malformations that get deepest."""
    flip = st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)).map(
        lambda pair: seed[: pair[0]] + bytes([pair[1]]) + seed[pair[0] + 1 :]
    )
    cut = st.integers(0, len(seed)).map(lambda n: seed[:n])
    insert = st.tuples(st.integers(0, len(seed)), st.binary(min_size=1, max_size=4)).map(
        lambda pair: seed[: pair[0]] + pair[1] + seed[pair[0] :]
    )
    return st.one_of(flip, cut, insert)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_mutations(_BALANCE), _mutations(_CARD_CERT)))
def test_mutated_valid_answers_never_raise_anything_but_card_errors(raw: bytes) -> None:
    _parse_everything(raw)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_card_side_command_parser_only_raises_malformed(raw: bytes) -> None:
    with contextlib.suppress(tlv.MalformedDataError):
        apdu.parse_command(raw)
