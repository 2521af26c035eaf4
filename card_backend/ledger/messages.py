"""What a reversal's result means, in Arabic and English, for the supervisor (or the point's clerk) who
reads the answer: the result code stays the fact; the message says what happened and what to do next.
"""

from __future__ import annotations

REVERSAL_MESSAGES: dict[str, tuple[str, str]] = {
    "ok": (
        "أُعيدت الكمية إلى مخصص الأسرة وإلى مخزون المركز، ورُدّ ثمنها حسب شرائح السعر",
        "credited back to the family's allowance and to the point's stock; the refund follows the price "
        "tiers",
    ),
    "stock_credited": (
        "انتهت فترة المخصص فلا تُعاد الكمية إلى الأسرة؛ أُعيدت إلى مخزون المركز وسُجّل المبلغ المستحق "
        "إعادته للأسرة",
        "the allowance's period has ended, so the family's quota is not credited; the goods are back in the "
        "point's stock and the refund owed to the family is recorded (price_minor)",
    ),
    "topup_withdrawn": (
        "سُحبت الكمية من الإضافة الممنوحة خطأً؛ نقص مخصص الأسرة بقدرها",
        "withdrawn from the top-up granted in error; the family's allowance is smaller by that much",
    ),
    "exceeds_allowance": (
        "لم تستخدم الأسرة من هذه الإضافة إلا أقل من الكمية المطلوبة سحبها؛ يمكن سحب المتبقي فقط "
        "(remaining_qty)",
        "the family has already drawn part of this top-up: only what is left (remaining_qty) can be "
        "withdrawn",
    ),
    "period_closed": (
        "انتهت فترة المخصص الذي خُصم منه هذا القيد ولا يمكن إعادة الكمية إلى الأسرة؛ لتصحيح مخزون المركز "
        "وتسجيل المبلغ المستحق أعد الطلب مع if_period_closed=stock_only",
        "the period of the allowance this entry debited has ended: it cannot be credited back to the "
        "family. To correct the point's stock and record the refund owed, send again with "
        "if_period_closed=stock_only",
    ),
    "already_reversed": (
        "سبق عكس هذا القيد بكامله",
        "this entry has already been reversed in full",
    ),
    "exceeds_reversible": (
        "الكمية أكبر مما بقي من هذا القيد دون عكس",
        "the quantity is more than what is left of this entry to reverse",
    ),
    "entry_not_reversible": (
        "هذا القيد ليس خصماً ولا إضافة يمكن عكسها (رفض أو حجز أو عكس أو ترحيل بكمية صفر)",
        "this entry is not a debit or a top-up that can be reversed (a refusal, a hold, a reversal or an "
        "empty post)",
    ),
    "advice_too_late": (
        "وصل إشعار عدم التسليم بعد المهلة المسموحة من وقت الخصم؛ لم يتغير شيء، وعلى المشرف أن يقرر",
        "the undelivered advice came later after the debit than allowed; nothing changed: a supervisor "
        "decides",
    ),
    "entry_not_found": (
        "لا يوجد قيد بهذا الرقم",
        "no journal entry has this id",
    ),
    "exists_with_different_payload": (
        "استُخدم هذا الرقم لطلب آخر",
        "this id was already used for another request",
    ),
    "not_debited": (
        "لم يُخصم شيء بهذا القيد فلا شيء يُعاد",
        "nothing was debited by this entry: there is nothing to credit back",
    ),
    "voided": (
        "لم يصل الخصم؛ أُلغي رقمه فلن يُخصم لاحقاً",
        "the debit never arrived: its id is voided, so it can never debit",
    ),
}


def reversal_message(result: str) -> tuple[str | None, str | None]:
    """(Arabic, English) for a reversal's result; (None, None) for a code without a message."""
    return REVERSAL_MESSAGES.get(result, (None, None))
