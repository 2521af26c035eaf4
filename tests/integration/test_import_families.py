"""The families CSV import over HTTP and from the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import itertools

from sqlalchemy import select
from typer.testing import CliRunner

from card_backend import nationalid
from card_backend.auth.principal import Role
from card_backend.family.models import Family, Person
from card_backend.imports.csvformat import COLUMNS
from tests.integration.test_family_api import counts, make_family

_serial = itertools.count(500_000)


def rows_for(book: str, members: int = 3, governorate: str = "aleppo") -> list[dict[str, str]]:
    rows = []
    for i in range(members):
        rows.append(
            {
                "book_number": book,
                "governorate": governorate,
                "address": "حي الشعار",
                "phone": "0944000000",
                "national_id": nationalid.make(3, next(_serial)),
                "first_name_ar": "أحمد",
                "last_name_ar": "الحلبي",
                "first_name_en": "Ahmad",
                "last_name_en": "Al-Halabi",
                "birth_date": "1975-03-04" if i == 0 else "2005-01-01",
                "sex": "M",
                "relation": "head" if i == 0 else "child",
            }
        )
    return rows


def to_csv(rows: list[dict[str, str]], columns=COLUMNS) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def upload(client, headers, data: bytes, skip_invalid: bool = False):
    return client.post(
        "/api/v1/imports/families",
        params={"skip_invalid": skip_invalid},
        files={"file": ("families.csv", data, "text/csv")},
        headers=headers,
    )


def test_import_creates_families_with_heads_persons_and_history(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    existing = make_family(client, reg)
    data = to_csv(rows_for("IMP-1", 4) + rows_for("IMP-2", 1) + rows_for("IMP-3", 2))
    r = upload(client, reg, data)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["families_imported"], report["persons_imported"], report["error_count"]) == (3, 7, 0)
    with engine.connect() as conn:
        fam = conn.execute(select(Family).where(Family.book_number == "IMP-1")).one()
        head = conn.execute(select(Person).where(Person.id == fam.head_person_id)).one()
    assert head.relation == "head" and head.family_id == fam.id and fam.governorate == "aleppo"
    got = client.get(f"/api/v1/families/{fam.id}", headers=reg).json()
    assert len(got["members"]) == 4 and got["history"][0]["kind"] == "create"
    assert got["history"][0]["new"]["line"] == 2
    # ids continue after the import: the API still creates families and persons
    later = make_family(client, reg)
    assert later["id"] > fam.id > existing["id"]


def test_a_file_with_one_error_imports_nothing_and_reports_line_field_reason(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    rows = rows_for("OK-1", 2) + rows_for("BAD-1", 3) + rows_for("OK-2", 2)
    rows[3]["national_id"] = "03000000000"
    rows[4]["birth_date"] = "1999-02-30"
    before = counts(engine)
    r = upload(client, reg, to_csv(rows))
    assert r.status_code == 422 and r.json()["error"] == "import_rejected"
    detail = r.json()["detail"]
    assert detail["imported"] is False and detail["error_count"] == 2
    assert [(e["line"], e["field"]) for e in detail["errors"]] == [(5, "national_id"), (6, "birth_date")]
    assert "check digit" in detail["errors"][0]["reason"]
    assert counts(engine) == before
    r = upload(client, reg, to_csv(rows), skip_invalid=True)
    assert r.status_code == 200, r.text
    ok = r.json()
    assert (ok["families_imported"], ok["persons_imported"], ok["families_skipped"]) == (2, 4, 1)
    books = client.get("/api/v1/families", params={"book_number": "BAD-1"}, headers=reg).json()
    assert books == []


def test_malformed_csv_line_is_refused_and_nothing_changes(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    data = to_csv(rows_for("M-1", 2) + rows_for("M-2", 2)).decode().splitlines()
    data[2] = data[2].rsplit(",", 3)[0]  # a person row cut short
    data.insert(4, '"M-2,aleppo,"broken quote",x')
    before = counts(engine)
    r = upload(client, reg, ("\n".join(data) + "\n").encode())
    assert r.status_code == 422 and r.json()["error"] == "import_rejected"
    errors = r.json()["detail"]["errors"]
    assert (
        errors[0]["line"] == 3 and errors[0]["field"] == "row" and "expected 12 fields" in errors[0]["reason"]
    )
    assert any(e["field"] == "row" and e["line"] == 5 for e in errors)
    assert counts(engine) == before
    r = upload(client, reg, b"book_number,national_id\nX,1\n")
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["field"] == "header"
    assert counts(engine) == before


def test_duplicates_in_file_and_against_registry_unknown_governorate_and_heads(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    fam = make_family(client, reg)
    a, b, c = rows_for("D-1", 2), rows_for("D-2", 2), rows_for("D-3", 2, governorate="atlantis")
    b[1]["national_id"] = a[1]["national_id"]
    d = rows_for(fam["book_number"], 1)
    e = rows_for("D-5", 2)
    e[0]["national_id"] = fam["members"][0]["national_id"]
    f = rows_for("D-6", 2)
    f[1]["relation"] = "head"
    g = rows_for("D-1", 1)  # the same book number again, not next to its first rows
    before = counts(engine)
    r = upload(client, reg, to_csv(a + b + c + d + e + f + g))
    assert r.status_code == 422
    found = {(x["line"], x["field"], x["reason"].split(":")[0]) for x in r.json()["detail"]["errors"]}
    assert (5, "national_id", "duplicate_national_id") in found
    assert (6, "governorate", "unknown_governorate") in found
    assert (8, "book_number", "duplicate_family_book") in found
    assert (9, "national_id", "duplicate_national_id") in found
    assert (12, "relation", "family_needs_one_head") in found
    assert (13, "book_number", "duplicate_family_book") in found
    assert counts(engine) == before
    r = upload(client, reg, to_csv(a + b + c + d + e + f + g), skip_invalid=True)
    assert r.status_code == 200 and r.json()["families_imported"] == 1  # only D-1's first rows


def test_columns_in_any_order_and_optional_columns_missing(client, auth):
    reg = auth(Role.REGISTRAR)
    cols = [
        "national_id",
        "relation",
        "sex",
        "birth_date",
        "first_name_ar",
        "last_name_ar",
        "governorate",
        "book_number",
    ]
    rows = [{k: v for k, v in row.items() if k in cols} for row in rows_for("ORD-1", 3)]
    r = upload(client, reg, to_csv(rows, cols))
    assert r.status_code == 200, r.text
    assert r.json()["persons_imported"] == 3


def test_auditor_cannot_import(client, auth, engine):
    before = counts(engine)
    r = upload(client, auth(Role.AUDITOR), to_csv(rows_for("AUD-1")))
    assert r.status_code == 403 and r.json()["error"] == "role_forbidden"
    assert counts(engine) == before


def test_cli_import_families_and_rejection_exit_code(engine, tmp_path, monkeypatch):
    from card_backend.cli import app
    from card_backend.config import get_settings

    monkeypatch.setenv("CARD_DATABASE_URL", str(engine.url.render_as_string(hide_password=False)))
    get_settings.cache_clear()
    try:
        good = tmp_path / "good.csv"
        good.write_bytes(to_csv(rows_for("CLI-1", 3) + rows_for("CLI-2", 2)))
        result = CliRunner().invoke(app, ["import", "families", str(good)])
        assert result.exit_code == 0, result.output
        assert "imported 2 families, 5 persons" in result.output
        bad = tmp_path / "bad.csv"
        rows = rows_for("CLI-3", 2)
        rows[1]["sex"] = "X"
        bad.write_bytes(to_csv(rows))
        report = tmp_path / "report.json"
        result = CliRunner().invoke(app, ["import", "families", str(bad), "--report", str(report)])
        assert result.exit_code == 1 and "import_rejected" in result.output
        assert '"field": "sex"' in report.read_text()
        assert counts(engine)["families"] == 2
    finally:
        get_settings.cache_clear()


def test_a_file_that_is_not_utf8_is_rejected_even_with_skip_invalid(client, auth, engine):
    reg = auth(Role.REGISTRAR)
    data = to_csv(rows_for("ENC-1", 2)) + b"ENC-2,aleppo," + b"\xff\xfe broken\n"
    before = counts(engine)
    r = upload(client, reg, data, skip_invalid=True)
    assert r.status_code == 422 and r.json()["detail"]["errors"][-1]["field"] == "encoding"
    assert counts(engine) == before


def test_names_with_commas_quotes_tabs_and_backslashes_survive_both_import_paths(client, auth):
    reg = auth(Role.REGISTRAR)
    odd = 'O\'Neil, "Jr"\t\\ النجار'
    clean = rows_for("Q-1", 2)
    clean[1]["last_name_en"] = odd
    clean[0]["address"] = ""
    clean[1]["address"] = ""
    assert upload(client, reg, to_csv(clean)).status_code == 200
    with_error = rows_for("Q-2", 2) + rows_for("Q-3", 1, governorate="atlantis")
    with_error[1]["first_name_en"] = odd
    assert upload(client, reg, to_csv(with_error), skip_invalid=True).json()["families_imported"] == 1
    for book, field in (("Q-1", "last_name_en"), ("Q-2", "first_name_en")):
        fid = client.get("/api/v1/families", params={"book_number": book}, headers=reg).json()[0]["id"]
        fam = client.get(f"/api/v1/families/{fid}", headers=reg).json()
        assert fam["members"][1][field] == odd
        assert fam["members"][0]["first_name_en"] == "Ahmad"
    assert fam["phone"] == "0944000000"
