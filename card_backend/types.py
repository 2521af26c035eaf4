"""Constrained strings shared by the API schemas.

Codes (products, points, card serials, rule codes) are short ASCII identifiers; free text (reasons,
names, addresses) may be any language but never holds control characters — PostgreSQL refuses NUL, and
one such value inside a group commit would fail every redemption grouped with it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]+$")]
Text = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")]
