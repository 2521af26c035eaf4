"""Constrained strings shared by the API schemas.

Codes (products, points, card serials, rule codes) are short ASCII identifiers; free text (reasons,
names, addresses) may be any language but never holds control characters — PostgreSQL refuses NUL, and
one such value inside a group commit would fail every redemption grouped with it.

Ids a caller names (families, persons, vehicles, licences, devices, points, holders) are rows of
``Integer`` primary keys — 32-bit on PostgreSQL. ``Id`` bounds them to 1..2^31-1 wherever a caller sends
one (path, query or body), so a number no such row can have is a 422 ``validation_error`` at the edge on
both databases, instead of reaching the driver: SQLite's raises ``OverflowError`` past 2^63-1, and
PostgreSQL answers "integer out of range" past 2^31-1 where the id is bound as the column's type and
"not found" where it is not. Offsets and other counters are bounded by ``BIGINT_MAX``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

BIGINT_MAX = 2**63 - 1
"""The largest value a database integer holds (PostgreSQL ``bigint``, SQLite ``INTEGER``)."""
ID_MAX = 2**31 - 1
"""The largest id of an ``Integer`` primary key (PostgreSQL ``integer``)."""

Id = Annotated[int, Field(ge=1, le=ID_MAX)]

Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")]
Text = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]

# An instant a caller may ask about (simulate at, open at, served at): bounded, so date arithmetic over
# periods and seasons can never leave the calendar (year 1 or 9999 would overflow it).
Moment = Annotated[
    datetime,
    AfterValidator(lambda v: _in_range(v)),
]


def _in_range(value: datetime) -> datetime:
    naive = value.replace(tzinfo=None)
    if not datetime(1970, 1, 1) <= naive <= datetime(2200, 1, 1):
        raise ValueError("must be between 1970-01-01 and 2200-01-01")
    return value
