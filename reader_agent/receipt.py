"""The receipt a point hands the citizen: Arabic and English, plain text narrow enough for a thermal printer.

It says what the family's message for the same debit says (``quota.notify``, invariant 8), in the same
words and units: the product's names, the quantity in the product's display unit (ml as L, g as kg,
exactly), the local date and time in the deployment's zone (``CARD_TIMEZONE``) with the zone named, and
the receipt code the message quotes. Every result code has an Arabic and an English text; a ``too_soon``
refusal says from when the draw is possible (``possible_at``, "Next draw").

Names, units and the zone are not in a redemption: the backend sends them with the tap answer
(``products``, ``timezone``), and the agent keeps the last ones in its outbox settings (``remember``,
``recall``) so an offline receipt names them too. Without them a receipt falls back to the product's
code, the raw quantity and ``CARD_TIMEZONE`` (else Asia/Damascus).

Plain text in logical order, never reshaped or reversed by hand (LIBRARIES.md): the clerk page shows it
in a right-to-left block and the browser shapes and orders it; a real printer gets it drawn to a raster
image by Pillow (raqm) for python-escpos, which does the same. So that a bidi renderer cannot scramble a
line, a line with a value holds one language only (Arabic first, then English), and every English line
is held left-to-right by marks (LRM) at both ends: in a right-to-left block a line ending in ``(ok)``
would otherwise show its closing bracket on the wrong side. Every line is at most WIDTH characters,
the zero-width marks not counted; a longer value wraps rather than being cut.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The family message's own formatting, so receipt and message agree to the character.
from quota.domain.texts import arabic_digits as _ar
from quota.domain.texts import local_time as _local_time
from quota.domain.texts import quantity as _qty
from quota.domain.texts import receipt_code as _code

WIDTH = 42
DEFAULT_TIMEZONE = "Asia/Damascus"
LRM = "\u200e"  # LEFT-TO-RIGHT MARK: holds an English line left-to-right inside a right-to-left block
CATALOGUE_SETTING = "receipt_catalogue"

# Every result a redemption can end with -> (Arabic, English): the ledger's (quota.domain.decide.Result,
# reversal and hold codes included), card authentication's and the HTTP layer's refusals
# (card_backend.errors), and the agent's own (card gone, offline limits).
RESULTS: dict[str, tuple[str, str]] = {
    "ok": ("تمت العملية", "Done"),
    # the ledger
    "exceeds_allowance": ("تجاوز المخصص", "More than the allowance left"),
    "not_eligible": ("غير مستحق", "Not eligible"),
    "card_blocked": ("البطاقة موقوفة", "Card blocked"),
    "card_unknown": ("بطاقة غير معروفة", "Unknown card"),
    "exists_with_different_payload": (
        "رقم العملية مستخدم لطلب مختلف", "Ref already used for another request"
    ),
    "point_out_of_stock": ("نفد المخزون", "Out of stock"),
    "point_unknown": ("مركز غير معروف", "Unknown point"),
    "product_not_served": ("المادة غير متوفرة هنا", "Product not served here"),
    "hold_expired": ("انتهت مدة الحجز", "Hold expired"),
    "hold_not_pending": ("الحجز غير قائم", "Hold no longer pending"),
    "exceeds_hold": ("تجاوز الكمية المحجوزة", "More than the hold"),
    "exceeds_fill_cap": ("تجاوز حد التعبئة", "More than one fill allows"),
    "too_soon": ("قبل الموعد المسموح", "Too soon"),
    "point_not_bound": ("البطاقة مرتبطة بمركز آخر", "Card bound to another point"),
    "invalid_quantity": ("كمية غير صالحة", "Invalid quantity"),
    "exceeds_used": ("تجاوز الكمية المصروفة", "More than was drawn"),
    "binding_changes_exhausted": ("استُنفدت مرات تغيير المركز", "No point changes left"),
    "entry_not_found": ("العملية غير موجودة", "Entry not found"),
    "entry_not_reversible": ("لا يمكن إلغاء هذه العملية", "Entry cannot be reversed"),
    "already_reversed": ("أُلغيت العملية من قبل", "Already reversed"),
    "exceeds_reversible": ("تجاوز الكمية القابلة للإلغاء", "More than can be reversed"),
    "period_closed": ("انتهت الفترة", "Period closed"),
    "stock_credited": ("أُعيدت الكمية إلى مخزون المركز", "Point stock credited"),
    "topup_withdrawn": ("سُحبت الإضافة", "Top-up withdrawn"),
    "advice_too_late": ("فات موعد الإشعار", "Advice too late"),
    # card authentication and the device
    "card_auth_failed": ("فشل التحقق من البطاقة", "Card authentication failed"),
    "counter_replayed": ("رد مكرر مرفوض", "Replayed card answer refused"),
    "challenge_unknown": ("طلب التحقق غير معروف", "Unknown challenge"),
    "challenge_expired": ("انتهت مهلة التحقق", "Challenge expired"),
    "wrong_point": ("الجهاز لا يتبع هذا المركز", "Device not enrolled at this point"),
    "not_authenticated": ("الجهاز غير مسجل الدخول", "Device not signed in"),
    "forbidden": ("الجهاز غير مخوّل", "Device not allowed"),
    # the HTTP layer: the request was refused before the ledger saw it
    "validation_error": ("طلب غير صالح", "Invalid request"),
    "invalid_input": ("طلب غير صالح", "Invalid request"),
    "invalid_value": ("قيمة غير صالحة", "Invalid value"),
    "bad_request": ("طلب غير صالح", "Invalid request"),
    "constraint_violated": ("تعارض - أعد المحاولة", "Conflict - try again"),
    "conflict": ("تعارض - أعد المحاولة", "Conflict - try again"),
    "too_many_requests": ("طلبات كثيرة - أعد المحاولة لاحقاً", "Too many requests - try later"),
    "not_found": ("رفض الخادم الطلب", "Refused by the server"),
    "method_not_allowed": ("رفض الخادم الطلب", "Refused by the server"),
    "payload_too_large": ("رفض الخادم الطلب", "Refused by the server"),
    "unsupported_media_type": ("رفض الخادم الطلب", "Refused by the server"),
    "http_error": ("رفض الخادم الطلب", "Refused by the server"),
    # the agent itself
    "card_removed": ("أُزيلت البطاقة - لم يُخصم شيء", "Card removed - nothing debited"),
    "card_malformed": ("البطاقة ردّت برد غير صالح - لم يُخصم شيء", "Invalid card answer - nothing debited"),
    "card_refused": ("البطاقة رفضت العملية - لم يُخصم شيء", "Card refused - nothing debited"),
    "exceeds_offline_ceiling": ("تجاوز حد العمل دون اتصال", "More than the offline limit"),
    "offline_not_allowed": ("لا يسمح بالصرف دون اتصال", "No offline service for this card"),
}
REFUSED = ("رُفضت العملية", "Refused")
"""A code this table does not know yet: still a refusal in both languages, the code beside it."""


def default_timezone() -> str:
    """The deployment's zone as this agent's environment names it (``CARD_TIMEZONE``), if it is one."""
    name = os.environ.get("CARD_TIMEZONE", "").strip()
    return name if name and _zone(name) is not None else DEFAULT_TIMEZONE


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class ProductName:
    name_ar: str
    name_en: str
    unit: str  # ml, g, piece, bundle, ... (quota.notify shows ml as L and g as kg)


@dataclass(frozen=True)
class Catalogue:
    """What a receipt needs beyond one redemption: the products' names and units, the deployment's zone."""

    products: Mapping[str, ProductName] = field(default_factory=dict)
    timezone: str = field(default_factory=default_timezone)
    point: tuple[str, str, str] | None = None  # this point: (code, Arabic name, English name)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone) or ZoneInfo(DEFAULT_TIMEZONE)

    def product(self, code: str) -> ProductName:
        """The product's names and unit; an unknown one is named by its code, its quantity left raw."""
        return self.products.get(code) or ProductName(code, code, "")

    def updated(self, answer: Mapping[str, Any]) -> Catalogue:
        """This catalogue with what a tap answer (``POST /card-auth/verify``) says: its products' names
        and units replace or join the known ones, its zone replaces this one; an answer without them
        (an older backend) changes nothing."""
        products = dict(self.products)
        for item in answer.get("products") or []:
            if isinstance(item, Mapping) and item.get("code"):
                products[str(item["code"])] = ProductName(
                    str(item.get("name_ar") or item["code"]),
                    str(item.get("name_en") or item["code"]),
                    str(item.get("unit") or ""),
                )
        timezone = str(answer.get("timezone") or "")
        point = answer.get("point")
        names = self.point
        if isinstance(point, Mapping) and point.get("code") and point.get("name_ar"):
            names = (str(point["code"]), str(point["name_ar"]), str(point.get("name_en") or ""))
        return Catalogue(products, timezone if timezone and _zone(timezone) else self.timezone, names)

    def point_names(self, code: str) -> tuple[str, str]:
        """(Arabic, English) names of this point for the receipt; its code until a tap told them."""
        if self.point is None or self.point[0] != code:
            return code, code
        return self.point[1], self.point[2] or self.point[1]

    def to_json(self) -> str:
        products = {code: [p.name_ar, p.name_en, p.unit] for code, p in sorted(self.products.items())}
        return json.dumps({"products": products, "timezone": self.timezone, "point": self.point},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> Catalogue:
        """A saved catalogue; nothing saved, or something unreadable, gives the default one."""
        try:
            saved = json.loads(text) if text else {}
            products = {str(code): ProductName(*map(str, names)) for code, names in saved["products"].items()}
            timezone = str(saved["timezone"])
            point = saved.get("point")
            names = None
            if isinstance(point, list) and len(point) == 3:
                names = (str(point[0]), str(point[1]), str(point[2]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()
        return cls(products, timezone if _zone(timezone) else default_timezone(), names)


class SettingsStore(Protocol):
    """Where the agent keeps small values across restarts (``Outbox.setting``/``set_setting``)."""

    def setting(self, key: str) -> str | None: ...

    def set_setting(self, key: str, value: str) -> None: ...


def remember(store: SettingsStore, answer: Mapping[str, Any]) -> Catalogue:
    """Update the saved catalogue from an online tap's answer; returns it."""
    catalogue = recall(store).updated(answer)
    store.set_setting(CATALOGUE_SETTING, catalogue.to_json())
    return catalogue


def recall(store: SettingsStore) -> Catalogue:
    """The catalogue the last online tap left (for an offline receipt), else the default one."""
    return Catalogue.from_json(store.setting(CATALOGUE_SETTING))


def possible_at(detail: object) -> dt.datetime | None:
    """When a refused draw becomes possible, from a refusal's detail (the ledger's stored answer)."""
    return moment(detail.get("possible_at") if isinstance(detail, Mapping) else None)


def moment(value: object) -> dt.datetime | None:
    """A time as the backend's JSON writes it (ISO 8601; naive: UTC), or None for anything else."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def remaining_of(detail: object) -> int | None:
    """What the allowance has left, from a refusal's detail (the ledger's stored answer), if it says."""
    value = detail.get("remaining_qty") if isinstance(detail, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    possible_at: dt.datetime | None = None  # too_soon: from when the draw is possible


def result_texts(code: str) -> tuple[str, str]:
    """(Arabic, English) text of a result code."""
    return RESULTS.get(code, REFUSED)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False) or [""]


def _arabic(text: str) -> list[str]:
    return _wrap(text)


def _english(text: str) -> list[str]:
    return [f"{LRM}{line}{LRM}" for line in _wrap(text)]


def _field(label_ar: str, label_en: str, value_ar: str, value_en: str) -> list[str]:
    return _arabic(f"{label_ar}: {value_ar}") + _english(f"{label_en}: {value_en}")


def render(data: ReceiptData, catalogue: Catalogue | None = None) -> str:
    """The receipt's text. ``catalogue``: product names, units and zone (``recall``); without it the
    product's code, the raw quantity and the default zone."""
    catalogue = catalogue or Catalogue()
    zone = catalogue.zone
    product = catalogue.product(data.product_code)
    rule = "=" * WIDTH
    when = _local_time(data.at, zone)
    qty_en, qty_ar = _qty(data.quantity_qty if data.result == "ok" else 0, product.unit)
    result_ar, result_en = result_texts(data.result)
    lines = [rule, "إيصال صرف / Redemption receipt"]
    point_ar, point_en = catalogue.point_names(data.point_code)
    lines += _field("المركز", "Point", _ar(point_ar), point_en)
    lines += _field("التاريخ", "Date", _ar(when), when)
    lines += _field("البطاقة", "Card", data.card_serial, data.card_serial)
    lines += _field("المادة", "Product", product.name_ar, product.name_en)
    lines += _field("الكمية", "Quantity", _ar(qty_ar), qty_en)
    if data.remaining_qty is not None:
        rem_en, rem_ar = _qty(data.remaining_qty, product.unit)
        lines += _field("المتبقي", "Remaining", _ar(rem_ar), rem_en)
    lines += _field("النتيجة", "Result", result_ar, f"{result_en} ({data.result})")
    if data.result == "too_soon" and data.possible_at is not None:
        possible = _local_time(data.possible_at, zone)
        lines += _field("موعد الصرف", "Next draw", _ar(possible), possible)
    if data.offline:
        lines += _arabic("دون اتصال - بانتظار المزامنة") + _english("OFFLINE - to sync")
    code = _code(data.redemption_id)
    lines += _field("رمز الإيصال", "Receipt code", code, code)
    lines += ["رقم العملية / Ref", *_english(data.redemption_id), rule]
    return "\n".join(lines) + "\n"
