"""Explain: for one holder, which rule versions apply and why, in data a person can read back.

A citizen refused at a station, or an auditor checking an exclusion, needs every step: each
predicate with the holder's own value, the amount's arithmetic, the period window, the price tiers,
and — once an allowance exists — the ledger's meters that decided the last answer (fill cap, gap
since the last fill, home-point binding, batch releases). It runs the very computation opening runs,
on a population of one, so it cannot tell a different story from the one that was opened.

It tells the ledger's story, not a parallel one: the allowance shown is the row the ledger serves at
``at`` (per product the latest started row, if ``decide.is_current``), on the entry of the rule
version that opened it, with its window as the next movement would see it (``decide.current_window``)
and the tiers ``decide.price_charges`` will price it with. A calendar or season rule is judged on the
registry as of its window's first day — the day the opening judged it — and a different outcome today
is a note, never a hidden allowance. Notes are in Arabic and English.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from quota.domain import amounts, batches, entitlement
from quota.domain.decide import (
    AllowanceState,
    available_now,
    ceiling_qty,
    current_window,
    is_current,
    price_charges,
)
from quota.domain.eligibility import HolderColumns
from quota.domain.periods import UTC, window
from quota.domain.rules import Rule
from quota.domain.terms import BatchRelease, PeriodKind, Terms

AllowanceLike = AllowanceState
"""What explain reads of an allowance row: the ledger's own ``decide.AllowanceState``."""


def judged_day(rule: Rule, at: datetime, tz: ZoneInfo = UTC) -> date:
    """The day whose registry (exclusions, licences, members' ages) decides ``rule`` at ``at``.

    A calendar or season allowance is opened as of its window's first day, so that day judges it for
    the whole window; a rolling rule's next window is judged every day (the daily refresh), so today.
    """
    w = window(rule.period, at, tz)
    if w is None or rule.period.kind == "rolling":
        return at.astimezone(tz).date()
    return w.start.astimezone(tz).date()


def ledger_rows(allowances: Iterable[AllowanceState], at: datetime) -> dict[str, AllowanceState]:
    """Per product, the row the ledger takes at ``at``: the latest started by then
    (``ledger_repository.lock_current_allowances``), served only if ``decide.is_current`` says so."""
    out: dict[str, AllowanceState] = {}
    for a in sorted(allowances, key=lambda a: (a.period_start, a.id)):
        if a.period_start <= at:
            out[a.product_code] = a
    return out


def serving(
    allowances: Iterable[AllowanceState], rules: Mapping[int, Rule], at: datetime
) -> list[AllowanceState]:
    """The rows the ledger serves at ``at``, one per product at most: the latest started row, if it
    serves ``at`` (``decide.is_current``: a calendar row whose period has ended does not, and the next
    period's row is not there until that period is opened). ``rules`` maps rule version ids to rules;
    a row whose version is not given cannot be judged and is left out. By product code."""
    out: list[AllowanceState] = []
    for _, row in sorted(ledger_rows(allowances, at).items()):
        rule = rules.get(row.rule_version_id)
        if rule is not None and is_current(row, rule.terms(row.rule_version_id, 1), at):
            out.append(row)
    return out


def _value(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _batch(b: BatchRelease) -> dict[str, Any]:
    return {"offset_days": b.offset_days, "qty": b.qty, "catch_up": b.catch_up}


NOTES: dict[str, tuple[str, str]] = {
    # code: (Arabic, English) — Arabic first, as every text a citizen reads
    "changed_since_period_start": (
        "حُكم على الشروط في {judged_on} (أول يوم في الفترة، كما حكم بها فتحُ الفترة). لو حُكم عليها اليوم "
        "({today}) {what_ar}: يسري ذلك من الفترة التالية، وتبقى مخصصات هذه الفترة كما فُتحت.",
        "Judged on {judged_on} (the first day of the period, as the opening judged it). Judged today "
        "({today}) {what_en}: that takes effect from the next period; this period's allowance stays as "
        "opened.",
    ),
    "served_until_it_ends": (
        "يصرف السجل من المخصصات المفتوحة بموجب هذه النسخة حتى نهاية فترتها؛ وبحسب الحكم في "
        "{judged_on} لا تنطبق القاعدة، فلن تُفتح الفترة التالية بموجبها.",
        "The ledger serves the allowance opened under this version until its {span} ends; judged on "
        "{judged_on} the rule does not apply, so the next {span} will not be opened under it.",
    ),
    "served_by_another_version": (
        "يصرف السجل هذا المنتج من المخصصات المفتوحة بموجب {rule} (النسخة {version}) حتى نهاية "
        "فترتها؛ وتنطبق هذه القاعدة ابتداءً من الفترة التالية.",
        "The ledger serves this product from the allowance opened under {rule} (version {version}) "
        "until its {span} ends; this rule applies from the next {span}.",
    ),
    "rule_ended_allowance_serves": (
        "لم تعد هذه النسخة من القاعدة سارية، لكن المخصصات المفتوحة بموجبها تُصرف حتى نهاية "
        "فترتها.",
        "This rule version is no longer in force, but the allowance opened under it is served until "
        "its {span} ends.",
    ),
    "period_not_opened": (
        "لم تُفتح بعد الفترة التي تبدأ في {start}: لا يمكن الصرف بموجب هذه القاعدة حتى تُفتح.",
        "The period starting {start} is not opened yet: nothing can be drawn under this rule until "
        "it is opened.",
    ),
    "no_allowance_opened": (
        "لا توجد مخصصات مفتوحة لهذا الحامل بموجب هذه القاعدة: لا يمكن الصرف حتى تُفتح له (في الفتح "
        "التالي أو التحديث اليومي).",
        "No allowance is open for this holder under this rule: nothing can be drawn until one is "
        "opened for it (at the next opening or daily refresh).",
    ),
}
"""What explain tells beside the figures, by code; ``notes`` entries carry the code and both texts."""


def _note(code: str, **values: Any) -> dict[str, str]:
    ar, en = NOTES[code]
    return {"code": code, "ar": ar.format(**values), "en": en.format(**values)}


def _span(rule: Rule) -> str:
    return "window" if rule.period.kind == "rolling" else "period"


def ledger_tiers(state: AllowanceState, terms: Terms) -> list[dict[str, Any]]:
    """The tiers ``decide.price_charges`` prices the row's period with: the first holds the base plus
    what was carried and topped up; the later ones are fixed slices (the base, when a later tier has no
    size); beyond them, the last tier's price."""
    out: list[dict[str, Any]] = []
    for index, tier in enumerate(terms.tiers):
        size = state.base_qty if tier.qty is None else tier.qty
        if index == 0:
            size += state.carried_qty + state.topup_qty
        out.append({"name": tier.name, "price_minor": tier.price_minor, "qty": size})
    return out


def _meters(
    rule: Rule, terms: Terms, row: AllowanceState, at: datetime, point_code: str | None
) -> dict[str, Any]:
    """The ledger's meters of a serving row, as a movement at ``at`` would see them: a rolling window
    that has ended is restarted first (``decide.current_window``), exactly as the ledger does."""
    w = current_window(row, terms, at)
    end = w.period_end
    rolling = terms.period_kind is PeriodKind.ROLLING
    if rolling:  # ended or not begun: the next fill starts the window (as the quota view says)
        running = row.period_end is not None and row.period_end > at
        end = row.period_end if running else None
    ceiling = ceiling_qty(w, terms, at)
    remaining = w.granted_qty - w.used_qty - w.held_qty
    now_qty, next_at = available_now(row, terms, point_code, at)
    out: dict[str, Any] = {
        "rule_version_id": row.rule_version_id,
        "period_start": w.period_start.isoformat(),
        "period_end": end.isoformat() if end else None,
        "granted_qty": w.granted_qty,
        "used_qty": w.used_qty,
        "held_qty": w.held_qty,
        "carried_qty": w.carried_qty,
        "topup_qty": w.topup_qty,
        "remaining_qty": remaining,
        "available_qty": max(ceiling - w.used_qty - w.held_qty, 0),  # what the period's batches allow
        # what one redemption (at ``point_code``, else the home station) would be granted now: the gap,
        # the fill cap, a running pump and the station applied, as the quota view shows it
        "available_now_qty": now_qty,
        "next_possible_at": next_at.isoformat() if next_at else None,
        # what drawing all that remains (after pending holds post) would cost, tier by tier
        "remaining_by_tier": [
            {"tier": c.tier, "qty": c.qty, "price_minor": c.price_minor}
            for c in price_charges(w._replace(used_qty=w.used_qty + w.held_qty), terms, max(remaining, 0))
        ],
    }
    if rolling:
        out["rolling"] = {"days": terms.rolling_days, "running": end is not None}
    if rule.fill_cap_qty is not None:
        out["fill_cap"] = {"fill_cap_qty": rule.fill_cap_qty}
    if rule.min_gap_s is not None:
        next_at = w.last_redeemed_at + timedelta(seconds=rule.min_gap_s) if w.last_redeemed_at else None
        out["gap"] = {
            "min_gap_s": rule.min_gap_s,
            "last_redeemed_at": w.last_redeemed_at.isoformat() if w.last_redeemed_at else None,
            "next_allowed_at": next_at.isoformat() if next_at else None,
            "too_soon": bool(next_at and at < next_at),
        }
    if rule.binding_max_changes is not None:
        out["binding"] = {
            "home_point_code": w.home_point_code,
            "changes_used": w.binding_changes,
            "max_changes": rule.binding_max_changes,
            "point_code": point_code,
            "point_ok": None
            if point_code is None or w.home_point_code is None
            else point_code == w.home_point_code,
        }
    if rule.batches:
        st = batches.state(terms.batches, w.period_start, at, w.granted_qty, w.used_qty,
                           w.base_qty, w.carried_qty + w.topup_qty)
        out["batches"] = {
            "released": [_batch(b) for b in st.released],
            "pending": [_batch(b) for b in st.pending],
            "catch_up_applies": st.catch_up_applies,
            "limit_qty": st.limit_qty,
            "drawable_qty": max(st.limit_qty - w.used_qty - w.held_qty, 0),
            "next_release_at": st.next_release_at.isoformat() if st.next_release_at else None,
        }
    return out


def _failed(res: entitlement.RuleResult) -> list[str]:
    return [p.name for p in res.predicates if not bool(p.passed[0])]


def _today_differs(
    judged: entitlement.RuleResult, today: entitlement.RuleResult, judged_on: date, on: date
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """How the rule would come out judged on ``on`` (today) instead of ``judged_on``, if differently."""
    was, now = bool(judged.allotted[0]), bool(today.allotted[0])
    granted_was, granted_now = int(judged.granted_qty[0]), int(today.granted_qty[0])
    if (was, granted_was, bool(judged.matched[0])) == (now, granted_now, bool(today.matched[0])):
        return None
    failed = _failed(today)
    block = {
        "judged_on": on.isoformat(),
        "matched": bool(today.matched[0]),
        "applies": now,
        "granted_qty": granted_now,
        "failed": failed,
    }
    if not now:
        why = ", ".join(failed) or "shadowed"
        what_en, what_ar = f"the rule would not apply ({why})", f"لما انطبقت القاعدة ({why})"
    elif not was:
        what_en, what_ar = "the rule would apply", "لانطبقت القاعدة"
    else:
        what_en, what_ar = f"the amount would be {granted_now}", f"لكانت الكمية {granted_now}"
    note = _note("changed_since_period_start", judged_on=judged_on, today=on, what_ar=what_ar,
                 what_en=what_en)
    return block, note


def explain(
    holder: HolderColumns,
    rules: Sequence[tuple[int, Rule]],
    at: datetime,
    allowances: Sequence[AllowanceState] = (),
    point_code: str | None = None,
    tz: ZoneInfo = UTC,
    *,
    holder_on: Callable[[date], HolderColumns] | None = None,
    price_per_qty: Mapping[str, int] | None = None,
    opened_periods: Collection[tuple[str, datetime]] | None = None,
) -> list[dict[str, Any]]:
    """One entry per rule version of the holder's type: why it applies or not, and how much.

    ``holder`` is a population of one (``HolderColumns.take``) as of the day of ``at``; ``holder_on``
    gives it as of another day (default: ``holder`` for every day). ``rules`` are (rule_version_id,
    rule) pairs and must include the version of every allowance the ledger serves. ``allowances`` are
    the holder's allowance rows: per product the ledger serves the latest started one if it is current
    (``serving``), and that row is shown on the entry of the version that opened it (``serving``:
    true), whatever the predicates say today. ``price_per_qty`` (product → quantity a tier price is
    for) prices ``remaining_by_tier``. ``opened_periods`` holds (product, window start) of calendar and
    season periods already opened for the holder's type: an eligible holder without an allowance is
    then told whether the period is not opened yet.

    Predicates of a calendar or season rule are judged as of its window's first day (``judged_on``),
    as the opening judged them; where today's registry gives another outcome, ``today`` and a note
    say so. Rolling rules are judged today (the next window's opening).
    """
    assert holder.n == 1, "explain takes a population of one"
    today = at.astimezone(tz).date()
    mine = [(vid, r) for vid, r in rules if r.holder_type == holder.holder_type]
    by_vid = dict(mine)
    version_of = {r.code: vid for vid, r in mine}
    code_of = {vid: r.code for vid, r in mine}
    ppq = price_per_qty or {}
    served = serving(allowances, by_vid, at)
    served_by_vid = {a.rule_version_id: a for a in served}
    served_by_product = {a.product_code: a for a in served}

    populations: dict[date, HolderColumns] = {today: holder}

    def population(day: date) -> HolderColumns:
        if day not in populations:
            populations[day] = holder_on(day) if holder_on is not None else holder
        return populations[day]

    ruleset = [r for _, r in mine]
    results: dict[date, dict[str, entitlement.RuleResult]] = {}
    taken_by: dict[date, dict[str, str]] = {}

    def computed(day: date) -> dict[str, entitlement.RuleResult]:
        if day not in results:
            found = entitlement.compute(ruleset, {holder.holder_type: population(day)}, at, tz)
            results[day] = {res.rule.code: res for res in found}
            first: dict[str, str] = {}
            for res in found:
                if res.eligible[0]:
                    first.setdefault(res.rule.product, res.rule.code)
            taken_by[day] = first
        return results[day]

    out: list[dict[str, Any]] = []
    for rule in entitlement.ordered(ruleset):
        vid = version_of[rule.code]
        entry: dict[str, Any] = {
            "rule": rule.code,
            "rule_version_id": vid,
            "product": rule.product,
            "holder_type": rule.holder_type,
        }
        row = served_by_vid.get(vid)
        terms = rule.terms(vid, ppq.get(rule.product, 1))
        day = judged_day(rule, at, tz)
        res = computed(day).get(rule.code)
        notes: list[dict[str, str]] = []
        if res is None:
            in_effect = rule.in_effect(today)
            entry["applies"] = False
            entry["reason"] = "not in effect" if not in_effect else "outside the period (season)"
            if row is not None:  # opened while in force: the ledger serves it until its period ends
                entry["applies"] = True
                entry["serving"] = True
                entry["tiers"] = ledger_tiers(current_window(row, terms, at), terms)
                entry["allowance"] = _meters(rule, terms, row, at, point_code)
                entry["notes"] = [_note("rule_ended_allowance_serves", span=_span(rule))]
            out.append(entry)
            continue
        entry["period"] = {
            "kind": rule.period.kind,
            "days": rule.period.days,
            "start": res.window.start.isoformat(),
            "end": res.window.end.isoformat() if res.window.end else None,
        }
        entry["judged_on"] = day.isoformat()
        entry["predicates"] = [
            {
                "name": p.name,
                "required": p.required,
                "value": _value(p.values[0]),
                "passed": bool(p.passed[0]),
            }
            for p in res.predicates
        ]
        entry["matched"] = bool(res.matched[0])
        if res.shadowed[0]:
            entry["shadowed_by"] = taken_by[day].get(rule.product)
        entry["amount"] = amounts.describe(rule.amount, res.parts)
        entry["base_qty"] = int(res.base_qty[0])
        entry["granted_qty"] = int(res.granted_qty[0])
        entry["tiers"] = [
            {"name": t.name, "price_minor": t.price_minor, "qty": int(res.base_qty[0]) if i == 0 else t.qty}
            for i, t in enumerate(rule.tiers)
        ]
        applies = bool(res.allotted[0])
        entry["applies"] = applies
        entry["serving"] = row is not None
        if day != today:
            now_res = computed(today).get(rule.code)
            differs = None if now_res is None else _today_differs(res, now_res, day, today)
            if differs is not None:
                entry["today"], note = differs
                notes.append(note)
        other = served_by_product.get(rule.product)
        if row is not None:
            # the ledger serves the allowance this version opened, whatever the predicates say now
            entry["applies"] = True
            entry["tiers"] = ledger_tiers(current_window(row, terms, at), terms)
            entry["allowance"] = _meters(rule, terms, row, at, point_code)
            if not applies:
                notes.append(_note("served_until_it_ends", judged_on=day, span=_span(rule)))
        elif other is not None:
            if applies:  # it would, but the ledger serves another version's allowance until it ends
                other_code = code_of.get(other.rule_version_id)
                entry["served_by"] = {"rule": other_code, "rule_version_id": other.rule_version_id}
                entry["applies"] = False
                name = other_code or f"#{other.rule_version_id}"
                notes.append(_note("served_by_another_version", rule=name, version=other.rule_version_id,
                                   span=_span(rule)))
        elif applies and opened_periods is not None:
            start = res.window.start
            local = start.astimezone(tz).date()
            calendar = rule.period.kind != "rolling"
            if calendar and (rule.product, start) not in opened_periods:
                entry["period_opened"] = False
                notes.append(_note("period_not_opened", start=local))
            else:
                if calendar:
                    entry["period_opened"] = True
                notes.append(_note("no_allowance_opened"))
        if entry["applies"] and rule.unused.policy != "expire":
            entry["unused"] = rule.unused.model_dump()
        if notes:
            entry["notes"] = notes
        out.append(entry)
    return out


def window_text(rule: Rule, at: datetime, tz: ZoneInfo = UTC) -> str:
    """The period window containing ``at`` as text (for messages and the admin pages)."""
    w = window(rule.period, at, tz)
    if w is None:
        return "outside the season"
    end = w.end.isoformat() if w.end else f"{rule.period.days} days from the first fill"
    return f"{w.start.isoformat()} .. {end}"
