from __future__ import annotations

import pytest

from card_backend import nationalid
from card_backend.errors import InvalidNationalId


def test_made_ids_are_valid_and_carry_the_governorate_number():
    nid = nationalid.make(3, 1234567)
    assert nid.startswith("0301234567") and len(nid) == 11
    assert nationalid.validate(nid) == nid


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0100000001", "11 digits"),
        ("010000000181", "11 digits"),
        ("01O00000018", "11 digits"),
        ("٠١٠٠٠٠٠٠٠١٨", "11 digits"),
        ("00000000000", "governorate number"),
        ("15000000001", "governorate number"),
    ],
)
def test_shape_and_governorate_errors_are_named(value: str, why: str):
    with pytest.raises(InvalidNationalId) as err:
        nationalid.validate(value)
    assert why in err.value.detail["reason"]


def test_one_mistyped_digit_or_swapped_neighbours_are_refused():
    nid = nationalid.make(1, 20481234)
    for pos in range(10):
        wrong = nid[:pos] + str((int(nid[pos]) + 1) % 10) + nid[pos + 1 :]
        if wrong[:2] != "00":
            assert nationalid.problem(wrong) is not None, wrong
    swapped = nid[:4] + nid[5] + nid[4] + nid[6:]
    if swapped != nid:
        assert "check digit" in (nationalid.problem(swapped) or "")


def test_governorate_count_follows_settings():
    nid = nationalid.make(15, 1)
    assert nationalid.problem(nid, governorate_count=14) is not None
    assert nationalid.problem(nid, governorate_count=20) is None


def test_check_digit_is_the_standard_luhn_digit():
    assert nationalid.luhn_digit("7992739871") == 3  # the textbook example 79927398713
    assert nationalid.luhn_digit("0000000000") == 0


def test_arabic_indic_digits_are_normalised_before_the_rule():
    ascii_id = nationalid.make(2, 345)
    arabic = ascii_id.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert nationalid.problem(arabic) is not None
    assert nationalid.normalise(f" {arabic} ") == ascii_id
