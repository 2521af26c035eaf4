"""The clerk's local page drives a real tap and redemption through pcscd and the API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from reader_agent.ui.app import create_clerk_app
from tests.e2e.pcsc import PcscHarness, open_card_when_present
from tests.e2e.stack import Stack


def test_clerk_reads_the_card_confirms_and_gets_the_receipt(pcsc: PcscHarness, stack: Stack) -> None:
    stack.card("F000001")
    stack.cards.insert("F000001", pcsc.reader(0))
    reader = pcsc.reader(0).name
    open_card_when_present(reader)[0].close()
    page = TestClient(create_clerk_app(stack.agent("P1"), [reader]))
    html = page.get("/").text
    assert 'dir="rtl"' in html and "Virtual PCD 00 00" in html and "P1" in html
    assert page.post(
        "/redeem", json={"reader": reader, "product_code": "sugar", "quantity_qty": 5}
    ).json() == {"result": "no_card_read"}
    tap = page.post("/tap", json={"reader": reader}).json()
    assert tap["result"] == "ok" and tap["card_serial"] == "F000001" and tap["online"] is True
    sugar = next(p for p in tap["products"] if p["product_code"] == "sugar")
    # named and in the product's unit, as the receipt and the family's message write them
    assert (sugar["available_qty"], sugar["name_ar"], sugar["name_en"]) == (5000, "سكر", "Sugar")
    assert (sugar["available_en"], sugar["available_ar"], sugar["next_possible"]) == ("5 kg", "٥ كغ", None)
    done = page.post("/redeem", json={"reader": reader, "product_code": "sugar", "quantity_qty": 250}).json()
    assert done["result"] == "ok" and "تمت العملية" in done["receipt"]
    assert stack.quota("F000001")["used_qty"] == 250
    empty = page.post("/tap", json={"reader": pcsc.reader(1).name}).json()
    assert empty == {"result": "card_removed"}
    # Prometheus: the point owes the backend nothing once the online redemption was answered.
    assert "card_agent_outbox_depth 0.0" in page.get("/metrics").text
