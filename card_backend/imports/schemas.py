"""The import's validation report: what was read and imported; each error's line, field and reason."""

from __future__ import annotations

from pydantic import BaseModel


class ImportRowError(BaseModel):
    line: int
    field: str
    reason: str


class ImportReport(BaseModel):
    source: str
    imported: bool
    skip_invalid: bool
    families_read: int = 0
    persons_read: int = 0
    families_imported: int = 0
    persons_imported: int = 0
    families_skipped: int = 0
    error_count: int = 0
    errors_shown: int = 0
    errors: list[ImportRowError] = []
    seconds: float = 0.0
