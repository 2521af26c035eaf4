"""The receipt a point hands over: Arabic and English, plain text narrow enough for a thermal printer.

Plain text only: printer code pages cannot shape Arabic, so a real printer gets this rendered to a
raster image (python-escpos + Pillow, LIBRARIES.md); the clerk page shows the same text in a browser,
which shapes and orders it. Every line is at most WIDTH characters.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH = 42

RESULTS_AR = {
    "ok": "تمت العملية",
    "exceeds_allowance": "تجاوز المخصص",
    "not_eligible": "غير مستحق",
    "card_blocked": "البطاقة موقوفة",
    "card_unknown": "بطاقة غير معروفة",
    "card_auth_failed": "فشل التحقق من البطاقة",
    "counter_replayed": "رد مكرر مرفوض",
    "card_removed": "أُزيلت البطاقة - لم يُخصم شيء",
    "card_malformed": "البطاقة ردّت برد غير صالح - لم يُخصم شيء",
    "card_refused": "البطاقة رفضت العملية - لم يُخصم شيء",
    "exceeds_offline_ceiling": "تجاوز حد العمل دون اتصال",
    "offline_not_allowed": "لا يسمح بالصرف دون اتصال",
    "product_not_served": "المادة غير متوفرة هنا",
    "point_out_of_stock": "نفد المخزون",
    "too_soon": "قبل الموعد المسموح",
    "exceeds_fill_cap": "تجاوز حد التعبئة",
}


@dataclass(frozen=True)
class ReceiptData:
    point_code: str
    card_serial: str
    product_code: str
    quantity_qty: int
    result: str
    redemption_id: str
    remaining_qty: int | None
    offline: bool
    at: dt.datetime


def _line(arabic: str, english: str, value: object) -> str:
    return f"{arabic} / {english}: {value}"[: WIDTH * 2]


def render(data: ReceiptData) -> str:
    rule = "=" * WIDTH
    lines = [
        rule,
        "إيصال صرف / Redemption receipt",
        _line("المركز", "Point", data.point_code),
        _line("التاريخ", "Date", data.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        _line("البطاقة", "Card", data.card_serial),
        _line("المادة", "Product", data.product_code),
        _line("الكمية", "Quantity", data.quantity_qty if data.result == "ok" else 0),
    ]
    if data.remaining_qty is not None:
        lines.append(_line("المتبقي", "Remaining", data.remaining_qty))
    lines.append(_line("النتيجة", "Result", f"{RESULTS_AR.get(data.result, data.result)} ({data.result})"))
    if data.offline:
        lines.append("دون اتصال - بانتظار المزامنة / OFFLINE - to sync")
    lines += [_line("رقم العملية", "Ref", ""), data.redemption_id, rule]
    return "\n".join(lines) + "\n"
