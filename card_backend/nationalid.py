"""The national ID rule, in one place so the API, the CSV import and the seed agree.

A national ID is **11 ASCII digits**:

- digits 1–2: the registration governorate's number, ``01`` … ``NN`` — its 1-based position in
  ``settings.governorates`` (default 14, Syria's governorates in the order of ``config.SYRIA_GOVERNORATES``).
  ``00`` and numbers past the list are refused, so a leading zero or a shifted column is caught;
- digits 3–10: the registration serial (any digits);
- digit 11: a **Luhn check digit** over the first ten, so one mistyped digit or two swapped neighbours
  (the usual clerk errors) are refused instead of landing on another citizen.

The registration governorate is where the person was first registered; it need not be the governorate of
the family today (people move), so it is not compared with the family's.
"""

from __future__ import annotations

from card_backend.errors import InvalidNationalId

LENGTH = 11
_DIGITS = frozenset("0123456789")
# Luhn: every second digit from the right (starting with the one left of the check digit) is doubled and
# its digits summed. This table maps a digit character to the character of that value, so a whole ID is
# summed by C code (``bytes.translate`` and ``sum``): it runs for every row of a million-family import.
_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_digit(body: str) -> int:
    """The check digit making ``body + digit`` pass the Luhn test (``body`` is ASCII digits)."""
    rev = body.encode("ascii")[::-1]
    total = sum(rev[0::2].translate(_DOUBLED)) + sum(rev[1::2]) - 48 * len(rev)
    return (10 - total % 10) % 10


# Registrars and citizens type Arabic-Indic (٠١٢…) or Persian (۰۱۲…) digits as often as ASCII ones.
_TO_ASCII = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")


def normalise(value: str) -> str:
    """ASCII digits for any Arabic-Indic or Persian digits, surrounding spaces removed."""
    return value.strip().translate(_TO_ASCII)


def problem(national_id: str, governorate_count: int = 14) -> str | None:
    """Why ``national_id`` is not valid, or ``None``. Cheap enough for millions of import rows."""
    if len(national_id) != LENGTH or not _DIGITS.issuperset(national_id):
        return "must be exactly 11 digits"
    code = int(national_id[:2])
    if code < 1 or code > governorate_count:
        return f"first two digits must be a governorate number 01-{governorate_count:02d}"
    if luhn_digit(national_id[:10]) != ord(national_id[10]) - 48:
        return "check digit does not match (mistyped digit?)"
    return None


def validate(national_id: str, governorate_count: int = 14) -> str:
    """Return the ID unchanged or raise ``InvalidNationalId`` naming the broken part of the rule."""
    reason = problem(national_id, governorate_count)
    if reason is not None:
        raise InvalidNationalId({"national_id": national_id, "reason": reason})
    return national_id


def make(governorate_number: int, serial: int) -> str:
    """Build a valid ID (seed, bench, tests): governorate number 1..99 and a serial below 10**8."""
    if not 1 <= governorate_number <= 99 or not 0 <= serial < 10**8:
        raise ValueError("governorate number 1..99 and serial 0..99,999,999")
    body = f"{governorate_number:02d}{serial:08d}"
    return body + str(luhn_digit(body))
