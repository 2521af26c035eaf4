"""How quantities, times and receipt codes are written for families and clerks, in English and Arabic:
one formatting for the family's message (``quota.notify``) and the receipt a point prints
(``reader_agent.receipt``), so the two agree to the character. Pure: the reader agent imports it
without the ledger's database code."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

ARABIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
# A product's unit -> (English label, Arabic label, smallest units per label unit).
UNITS = {"ml": ("L", "ل", 1000), "g": ("kg", "كغ", 1000), "piece": ("pc", "قطعة", 1),
         "bundle": ("bundle", "ربطة", 1), "point": ("pt", "نقطة", 1)}
CURRENCY = ("SYP", "ل.س")
"""Money in messages: prices and refunds are whole units of this currency (quota/rulesets/demo.yaml:
"SYP per L, per kg"), shown with its label as (English, Arabic)."""


def amount(value: int, divisor: int) -> str:
    """``value / divisor`` written out exactly (integers only, no rounding), trailing zeros dropped."""
    sign = "-" if value < 0 else ""
    whole, rest = divmod(abs(value), divisor)
    if rest == 0:
        return f"{sign}{whole}"
    digits = len(str(divisor - 1))
    return f"{sign}{whole}.{rest:0{digits}d}".rstrip("0")


def quantity(qty: int, unit: str) -> tuple[str, str]:
    """(English, Arabic) quantity in the unit's display unit: ml as L, g as kg, counted units as they are."""
    en, ar, divisor = UNITS.get(unit, (unit, unit, 1))
    value = amount(qty, divisor)
    return f"{value} {en}".rstrip(), f"{value} {ar}".rstrip()


def zone_label(when: datetime) -> str:
    """The local abbreviation (EET, EEST, UTC) when the zone has a lettered one, else the zone's name."""
    abbreviation = when.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return str(getattr(when.tzinfo, "key", "") or abbreviation)


def local_time(at: datetime, zone: tzinfo) -> str:
    """``at`` (naive: UTC, as SQLite returns it) as the deployment's local date and time, zone named."""
    local = (at.replace(tzinfo=UTC) if at.tzinfo is None else at).astimezone(zone)
    return f"{local.strftime('%Y-%m-%d %H:%M')} {zone_label(local)}"


def receipt_code(entry_id: object) -> str:
    """A journal entry's receipt code as the family sees it (Latin letters and digits, in both texts)."""
    return str(entry_id)[:8].upper()


def arabic_digits(text: str) -> str:
    """Arabic-Indic digits: for the Arabic text's own words and numbers, never for a receipt code."""
    return text.translate(ARABIC_DIGITS)
