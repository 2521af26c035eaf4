"""The families CSV: one row per person, carrying its family's columns. Parsing and row rules are pure.

Columns (a header row is required; order is free; UTF-8, a BOM is tolerated; ``,`` separated, ``"`` quoted):

    book_number   required  the family book number, [A-Za-z0-9-/], at most 32 characters
    governorate   required  one of settings.governorates (default: Syria's 14, e.g. ``damascus``)
    address       optional  at most 200 characters
    phone         optional  at most 20 characters
    national_id   required  11 digits, governorate number + serial + Luhn check digit (see nationalid.py)
    first_name_ar required  at most 60 characters
    last_name_ar  required  at most 60 characters
    first_name_en optional  Latin transliteration, at most 60 characters
    last_name_en  optional
    birth_date    required  YYYY-MM-DD, from 1900-01-01 to today
    sex           required  M or F
    relation      required  head, spouse, child, parent or other

The rows of one family are consecutive and repeat the same governorate, address and phone; each family has
exactly one ``head``. Streaming: only the current family is held in memory, so a file of any size parses in
flat memory. Duplicates across the file and against the database are found afterwards, in SQL.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TextIO

from card_backend.nationalid import normalise as normalise_national_id
from card_backend.nationalid import problem as national_id_problem

COLUMNS: tuple[str, ...] = (
    "book_number",
    "governorate",
    "address",
    "phone",
    "national_id",
    "first_name_ar",
    "last_name_ar",
    "first_name_en",
    "last_name_en",
    "birth_date",
    "sex",
    "relation",
)
REQUIRED = frozenset(COLUMNS) - {"address", "phone", "first_name_en", "last_name_en"}
SEXES = frozenset({"M", "F"})
RELATIONS = frozenset({"head", "spouse", "child", "parent", "other"})
MAX_MEMBERS = 40
_BOOK = re.compile(r"^[A-Za-z0-9\-/]{1,32}$")
_LIMITS = {
    "address": 200,
    "phone": 20,
    "first_name_ar": 60,
    "last_name_ar": 60,
    "first_name_en": 60,
    "last_name_en": 60,
}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    reason: str


# A staged person: (p_ord, f_ord, line, national_id, first_name_ar, last_name_ar, first_name_en,
# last_name_en, birth_date, sex, relation); a staged family: (f_ord, line, book_number, governorate,
# address, phone, head_p_ord). Ordinals number the file's valid families/persons from 1.
PersonTuple = tuple[int, int, int, str, str, str, str, str, str, str, str]
FamilyTuple = tuple[int, int, str, str, str, str, int]


@dataclass(slots=True)
class FamilyGroup:
    family: FamilyTuple
    persons: list[PersonTuple] = field(default_factory=list)


class FamilyParser:
    """Turns CSV rows into valid family groups; every broken rule goes to ``report`` with line and field.

    A family with any error is dropped whole (a half-registered family would be wrong); the caller decides
    whether that rejects the file or only skips the family (``--skip-invalid``).
    """

    def __init__(self, governorates: Iterable[str], report: Callable[[RowError], None], today: date) -> None:
        self.governorates = frozenset(governorates)
        self.governorate_count = len(self.governorates)
        self.report = report
        self.today_iso = today.isoformat()
        self.families_read = 0
        self.persons_read = 0
        self.families_invalid = 0
        self._f_ord = 0
        self._p_ord = 0

    def _header(self, header: list[str]) -> list[int] | None:
        names = [h.strip().lower() for h in header]
        missing = sorted(REQUIRED - set(names))
        unknown = sorted(set(names) - set(COLUMNS))
        if missing or unknown or len(set(names)) != len(names):
            reason = f"missing {missing}, unknown {unknown}" if missing or unknown else "repeated column"
            self.report(RowError(1, "header", f"{reason}; expected columns {list(COLUMNS)}"))
            return None
        return [names.index(c) if c in names else -1 for c in COLUMNS]

    def _row_errors(self, line: int, v: list[str]) -> list[RowError]:
        """All rules of one row; the happy path is a handful of comparisons (millions of rows)."""
        errors: list[RowError] = []
        book, gov, nid, bd = v[0], v[1], v[4], v[9]
        if not nid.isascii():
            nid = v[4] = normalise_national_id(nid)
        if not _BOOK.match(book):
            errors.append(RowError(line, "book_number", "required: letters, digits, - or /, at most 32"))
        if gov not in self.governorates:
            errors.append(RowError(line, "governorate", "unknown_governorate"))
        why = national_id_problem(nid, self.governorate_count)
        if why is not None:
            errors.append(RowError(line, "national_id", f"invalid_national_id: {why}"))
        if not v[5] or not v[6]:
            errors.append(RowError(line, "first_name_ar" if not v[5] else "last_name_ar", "required"))
        for i, name in (
            (2, "address"),
            (3, "phone"),
            (5, "first_name_ar"),
            (6, "last_name_ar"),
            (7, "first_name_en"),
            (8, "last_name_en"),
        ):
            if len(v[i]) > _LIMITS[name]:
                errors.append(RowError(line, name, f"longer than {_LIMITS[name]} characters"))
        if len(bd) != 10 or bd[4] != "-" or bd[7] != "-" or not "1900-01-01" <= bd <= self.today_iso:
            errors.append(RowError(line, "birth_date", "YYYY-MM-DD between 1900-01-01 and today"))
        else:
            try:
                date.fromisoformat(bd)
            except ValueError:
                errors.append(RowError(line, "birth_date", "not a calendar date"))
        if v[10] not in SEXES:
            errors.append(RowError(line, "sex", "M or F"))
        if v[11] not in RELATIONS:
            errors.append(RowError(line, "relation", "head, spouse, child, parent or other"))
        return errors

    def _close(self, rows: list[tuple[int, list[str]]], bad: bool) -> FamilyGroup | None:
        self.families_read += 1
        first_line, first = rows[0]
        heads = [line for line, v in rows if v[11] == "head"]
        if len(heads) != 1:
            where = heads[1] if heads else first_line
            self.report(
                RowError(where, "relation", f"family_needs_one_head: {len(heads)} heads in the family")
            )
            bad = True
        if len(rows) > MAX_MEMBERS:
            self.report(RowError(first_line, "book_number", f"more than {MAX_MEMBERS} members"))
            bad = True
        if bad:
            self.families_invalid += 1
            return None
        self._f_ord += 1
        f_ord, head_p_ord = self._f_ord, 0
        group = FamilyGroup(family=(f_ord, first_line, first[0], first[1], first[2], first[3], 0))
        for line, v in rows:
            self._p_ord += 1
            if v[11] == "head":
                head_p_ord = self._p_ord
            group.persons.append((self._p_ord, f_ord, line, v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]))
        group.family = (*group.family[:6], head_p_ord)
        return group

    def families(self, stream: TextIO) -> Iterator[FamilyGroup]:
        reader = csv.reader(stream, strict=True)
        try:
            header = next(reader)
        except (StopIteration, csv.Error):
            self.report(RowError(1, "header", f"a header row is required: {','.join(COLUMNS)}"))
            return
        index = self._header(header)
        if index is None:
            return
        width = len(header)
        identity = index == list(range(len(COLUMNS))) and width == len(COLUMNS)
        rows: list[tuple[int, list[str]]] = []
        bad = False
        poisoned: str | None = None
        while True:
            try:
                raw = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                self.report(RowError(reader.line_num, "row", f"malformed CSV: {exc}"))
                bad = True
                continue
            line = reader.line_num
            if not raw:
                continue
            self.persons_read += 1
            if len(raw) != width:
                self.report(
                    RowError(line, "row", f"malformed CSV: expected {width} fields, found {len(raw)}")
                )
                # The family this line belongs to is skipped whole too (never imported short of a member).
                poisoned = raw[index[0]] if index[0] < len(raw) else None
                bad = bad or (bool(rows) and poisoned == rows[0][1][0])
                continue
            v = raw if identity else [raw[i] if i >= 0 else "" for i in index]
            if rows and v[0] != rows[0][1][0]:
                group = self._close(rows, bad)
                if group is not None:
                    yield group
                rows, bad = [], False
            if not rows and poisoned is not None:
                bad, poisoned = v[0] == poisoned, None
            if rows:
                first = rows[0][1]
                for i, name in ((1, "governorate"), (2, "address"), (3, "phone")):
                    if v[i] != first[i]:
                        self.report(
                            RowError(line, name, f"differs from the family's first row (line {rows[0][0]})")
                        )
                        bad = True
            errors = self._row_errors(line, v)
            if errors:
                for e in errors:
                    self.report(e)
                bad = True
            rows.append((line, v))
        if rows:
            group = self._close(rows, bad)
            if group is not None:
                yield group
