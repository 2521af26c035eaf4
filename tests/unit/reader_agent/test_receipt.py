"""The citizen's paper receipt says what the family's message says for the same debit: the product's
names, quantities in the product's unit, the local date and time in the deployment's zone; every result
code has Arabic and English text; a too_soon refusal says from when; English lines stay left-to-right
inside the clerk page's right-to-left block."""

from __future__ import annotations

import ast
import datetime as dt
import inspect
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from card_backend import errors as backend_errors
from card_backend.cardauth import errors as cardauth_errors
from card_backend.ledger.schemas import OutcomeOut
from quota import notify
from quota.domain.decide import Result
from reader_agent import agent
from reader_agent.outbox import Outbox
from reader_agent.receipt import (
    CATALOGUE_SETTING,
    LRM,
    REFUSED,
    RESULTS,
    WIDTH,
    Catalogue,
    ProductName,
    ReceiptData,
    possible_at,
    recall,
    remember,
    render,
    result_texts,
)

AT = dt.datetime(2026, 11, 18, 22, 30, tzinfo=dt.UTC)  # 19 Nov 01:30 in Damascus (UTC+3)
RID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
GASOLINE = Catalogue({"gasoline": ProductName("بنزين", "Gasoline", "ml")}, "Asia/Damascus")
# A tap answer (POST /api/v1/card-auth/verify) as the backend sends it, reduced to what receipts read.
ANSWER = {
    "quota": [],
    "balance_certificates": [],
    "products": [
        {"code": "gasoline", "name_ar": "بنزين", "name_en": "Gasoline", "unit": "ml"},
        {"code": "sugar", "name_ar": "سكر", "name_en": "Sugar", "unit": "g"},
        {"code": "gas", "name_ar": "غاز", "name_en": "Gas cylinder", "unit": "piece"},
    ],
    "timezone": "Asia/Damascus",
}


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_a_fill_reads_as_the_familys_message_for_the_same_debit() -> None:
    text = render(ReceiptData("P", "V000001", "gasoline", 20_000, "ok", RID, 20_000, False, AT), GASOLINE)
    _, sms_en = notify.render(
        {"product_code": "gasoline", "point_code": "P", "quantity_qty": 20_000, "remaining_qty": 20_000,
         "created_at": AT, "entry_id": RID, "kind": "redeem", "price_minor": 0},
        {"gasoline": ("بنزين", "Gasoline", "ml", 1000)}, {}, zone=ZoneInfo("Asia/Damascus"))
    lines = [line.strip(LRM) for line in _lines(text)]
    assert "Date: 2026-11-19 01:30 Asia/Damascus" in lines  # the local day, not 18 Nov 22:30 UTC
    assert "Product: Gasoline" in lines and "المادة: بنزين" in lines
    assert "Quantity: 20 L" in lines and "Remaining: 20 L" in lines
    assert "الكمية: ٢٠ ل" in lines and "المتبقي: ٢٠ ل" in lines
    assert "التاريخ: ٢٠٢٦-١١-١٩ ٠١:٣٠ Asia/Damascus" in lines
    assert "Receipt code: 0F1E2D3C" in lines
    for words in ("20 L Gasoline", "remaining 20 L", "2026-11-19 01:30 Asia/Damascus", "receipt 0F1E2D3C"):
        assert words in sms_en  # the same words as the message's
    assert "UTC" not in text and "20000" not in text


@pytest.mark.parametrize(
    ("unit", "qty", "english", "arabic"),
    [("ml", 12_500, "12.5 L", "١٢.٥ ل"), ("g", 1_000, "1 kg", "١ كغ"), ("piece", 1, "1 pc", "١ قطعة"),
     ("bundle", 2, "2 bundle", "٢ ربطة")],
)
def test_quantities_are_in_the_products_display_unit_exactly(
    unit: str, qty: int, english: str, arabic: str
) -> None:
    catalogue = Catalogue({"x": ProductName("س", "X", unit)})
    text = render(ReceiptData("P", "F1", "x", qty, "ok", RID, qty, False, AT), catalogue)
    lines = [line.strip(LRM) for line in _lines(text)]
    assert f"Quantity: {english}" in lines and f"Remaining: {english}" in lines
    assert f"الكمية: {arabic}" in lines


def test_the_zone_is_the_deployments_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    data = ReceiptData("P", "F1", "gasoline", 1000, "ok", RID, None, False, AT)
    assert "Date: 2026-11-18 22:30 UTC" in render(data, Catalogue(timezone="UTC"))
    monkeypatch.delenv("CARD_TIMEZONE", raising=False)
    assert "Date: 2026-11-19 01:30 Asia/Damascus" in render(data)  # the default zone
    monkeypatch.setenv("CARD_TIMEZONE", "Europe/Berlin")  # the agent's own setting when no tap said one
    assert "Date: 2026-11-18 23:30 CET" in render(data)
    monkeypatch.setenv("CARD_TIMEZONE", "Not/AZone")
    assert "Asia/Damascus" in render(data)


def _redemption_result_codes() -> set[str]:
    """Every code a redemption's receipt can show: the ledger's results, card authentication's and the
    HTTP layer's refusals, and the agent's own (read from its source, so a new one is caught)."""
    codes = {str(r) for r in Result}
    codes |= {
        cls.code
        for cls in vars(cardauth_errors).values()
        if isinstance(cls, type) and issubclass(cls, backend_errors.DomainError)
        and cls.code != "invalid_public_key"  # key registration's, not a redemption's
    }
    codes |= set(backend_errors._HTTP_CODES.values()) | {"http_error"}  # reader_agent.client's fallback
    codes |= {"validation_error", "invalid_value", "constraint_violated"}  # card_backend.errors' handlers
    tree = ast.parse(inspect.getsource(agent))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "_finish" and len(node.args) > 5:
            result = node.args[5]
            if isinstance(result, ast.Constant) and isinstance(result.value, str):
                codes.add(result.value)
        if isinstance(node, ast.FunctionDef) and node.name == "_card_error_code":
            codes |= {str(n.value.value) for n in ast.walk(node) if isinstance(n, ast.Return)
                      and isinstance(n.value, ast.Constant)}
    return codes


def test_every_result_code_has_arabic_and_english_text() -> None:
    codes = _redemption_result_codes()
    assert {"point_not_bound", "wrong_point", "exists_with_different_payload", "invalid_quantity",
            "card_removed", "exceeds_offline_ceiling", "not_authenticated"} <= codes
    missing = sorted(codes - set(RESULTS))
    assert not missing, missing
    for code in codes:
        arabic, english = result_texts(code)
        assert any("\u0600" <= ch <= "\u06ff" for ch in arabic), code
        assert english.isascii() and english and english != code, code
    assert result_texts("something_new") == REFUSED


@pytest.mark.parametrize("code", ["point_not_bound", "wrong_point", "exists_with_different_payload",
                                  "invalid_quantity"])
def test_a_refusal_prints_its_arabic_and_english_text_and_its_code(code: str) -> None:
    text = render(ReceiptData("Q", "V000001", "gasoline", 20_000, code, RID, None, False, AT), GASOLINE)
    arabic, english = RESULTS[code]
    flat = " ".join(line.strip(LRM) for line in _lines(text))
    assert f"النتيجة: {arabic}" in flat and f"Result: {english} ({code})" in flat
    assert f"{code} ({code})" not in flat and "Quantity: 0 L" in flat


def test_too_soon_says_from_when_in_local_time() -> None:
    refused = OutcomeOut(id=RID, result="too_soon", quantity_qty=0, remaining_qty=20_000, price_minor=0,
                         possible_at=dt.datetime(2026, 11, 25, 22, 30, tzinfo=dt.UTC))
    detail = refused.model_dump(mode="json")  # the 409's detail, as the agent's client gets it
    when = possible_at(detail)
    assert when == dt.datetime(2026, 11, 25, 22, 30, tzinfo=dt.UTC)
    data = ReceiptData("P", "V000001", "gasoline", 20_000, "too_soon", RID, None, False, AT, when)
    lines = [line.strip(LRM) for line in _lines(render(data, GASOLINE))]
    assert "Next draw: 2026-11-26 01:30 Asia/Damascus" in lines
    assert "موعد الصرف: ٢٠٢٦-١١-٢٦ ٠١:٣٠ Asia/Damascus" in lines
    assert possible_at({"serial": "F1"}) is None and possible_at(None) is None
    assert possible_at({"possible_at": "not a time"}) is None
    assert possible_at({"possible_at": "2026-11-25T22:30:00"}) == when  # naive: UTC, as stored


def test_english_lines_stay_left_to_right_and_every_line_fits_the_paper() -> None:
    data = ReceiptData("P1", "V000001", "gasoline", 20_000, "card_malformed", RID, 20_000, True, AT)
    for line in _lines(render(data, GASOLINE)):
        assert len(line.strip(LRM)) <= WIDTH, line
        has_arabic = any("\u0600" <= ch <= "\u06ff" for ch in line)
        if not has_arabic and line[:1].isascii() and line.strip("="):
            # Held by marks at both ends: "(card_malformed)" keeps its brackets in a right-to-left block.
            assert line.startswith(LRM) and line.endswith(LRM), line
        if has_arabic:
            assert LRM not in line and not line[:1].isascii(), line  # Arabic lines begin in Arabic


def test_the_catalogue_comes_from_the_tap_answer_and_is_kept_for_offline_receipts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert recall(box) == Catalogue()  # never online: names unknown, the quantity left raw
    remember(box, ANSWER)
    box.close()
    reopened = Outbox(tmp_path / "outbox.sqlite3")
    catalogue = recall(reopened)
    assert catalogue.product("sugar") == ProductName("سكر", "Sugar", "g")
    assert catalogue.timezone == "Asia/Damascus"
    # An answer from an older backend (no names, no zone) keeps what was learnt; a new zone replaces it.
    assert remember(reopened, {"quota": [], "balance_certificates": []}) == catalogue
    rice = {"code": "rice", "name_ar": "رز", "name_en": "Rice", "unit": "g"}
    moved = remember(reopened, {"products": [rice], "timezone": "UTC"})
    assert moved.timezone == "UTC" and moved.product("sugar").name_en == "Sugar"
    assert moved.product("rice").name_en == "Rice" and recall(reopened) == moved
    assert remember(reopened, {"timezone": "Not/AZone"}).timezone == "UTC"
    offline = render(ReceiptData("P", "F1", "sugar", 1500, "ok", RID, 1000, True, AT), recall(reopened))
    assert "Product: Sugar" in offline and "Quantity: 1.5 kg" in offline and "OFFLINE" in offline
    reopened.set_setting(CATALOGUE_SETTING, "{not json")
    assert recall(reopened) == Catalogue()
    reopened.set_setting(CATALOGUE_SETTING, json.dumps({"products": {"x": [1]}, "timezone": "UTC"}))
    assert recall(reopened) == Catalogue()
    unknown = render(ReceiptData("P", "F1", "salt", 700, "ok", RID, None, False, AT), recall(reopened))
    assert "Product: salt" in unknown and "Quantity: 700" in unknown  # no names known: the code, raw
