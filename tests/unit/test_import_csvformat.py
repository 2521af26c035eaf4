"""The families CSV parser alone: grouping, row rules and what a malformed line does to its family."""

from __future__ import annotations

import io
from datetime import date

from card_backend import nationalid
from card_backend.config import SYRIA_GOVERNORATES
from card_backend.imports.csvformat import COLUMNS, FamilyParser, RowError

HEADER = ",".join(COLUMNS)


def row(book: str, serial: int, relation: str = "child", **over: str) -> str:
    values = {
        "book_number": book,
        "governorate": "homs",
        "address": "a",
        "phone": "",
        "national_id": nationalid.make(4, serial),
        "first_name_ar": "علي",
        "last_name_ar": "الحمصي",
        "first_name_en": "Ali",
        "last_name_en": "Al-Homsi",
        "birth_date": "1990-01-01",
        "sex": "M",
        "relation": relation,
    }
    values.update(over)
    return ",".join(values[c] for c in COLUMNS)


def parse(lines: list[str]) -> tuple[list, list[RowError], FamilyParser]:
    errors: list[RowError] = []
    parser = FamilyParser(SYRIA_GOVERNORATES, errors.append, date(2026, 1, 1))
    groups = list(parser.families(io.StringIO("\n".join([HEADER, *lines]) + "\n")))
    return groups, errors, parser


def test_consecutive_rows_make_one_family_with_ordinals_and_head():
    groups, errors, parser = parse([row("A", 1, "head"), row("A", 2), row("B", 3, "head")])
    assert errors == [] and parser.families_read == 2 and parser.persons_read == 3
    a, b = groups
    assert a.family == (1, 2, "A", "homs", "a", "", 1) and [p[0] for p in a.persons] == [1, 2]
    assert b.family[0] == 2 and b.family[6] == 3 and b.persons[0][2] == 4


def test_each_rule_names_line_and_field():
    lines = [
        row("A", 1, "head", birth_date="2030-01-01"),
        row("A", 2, sex="X", governorate="homs"),
        row("A", 3, relation="cousin", national_id="04000000000"),
        row("A", 4, address="b"),
    ]
    groups, errors, _ = parse(lines)
    assert groups == []
    assert {(e.line, e.field) for e in errors} == {
        (2, "birth_date"),
        (3, "sex"),
        (4, "relation"),
        (4, "national_id"),
        (5, "address"),
    }


def test_a_short_line_poisons_only_its_own_family():
    short = row("B", 3, "head").rsplit(",", 2)[0]
    groups, errors, parser = parse([row("A", 1, "head"), short, row("B", 4, "head"), row("C", 5, "head")])
    assert [g.family[2] for g in groups] == ["A", "C"]
    assert errors[0].line == 3 and errors[0].field == "row" and parser.families_invalid == 1


def test_no_head_or_two_heads():
    _, errors, _ = parse([row("A", 1), row("B", 2, "head"), row("B", 3, "head")])
    assert [(e.line, e.field) for e in errors] == [(2, "relation"), (4, "relation")]
