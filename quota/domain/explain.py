"""Explain: for one holder, which rule versions apply and why, in data a person can read back.

A citizen refused at a station, or an auditor checking an exclusion, needs every step: each
predicate with the holder's own value, the amount's arithmetic, the period window, the price tiers,
and — once an allowance exists — the ledger's meters that decided the last answer (fill cap, gap
since the last fill, home-point binding, batch releases). It runs the very computation opening runs,
on a population of one, so it cannot tell a different story from the one that was opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from quota.domain import amounts, batches, entitlement
from quota.domain.eligibility import HolderColumns
from quota.domain.periods import UTC, window
from quota.domain.rules import Rule
from quota.domain.terms import BatchRelease


class AllowanceLike(Protocol):
    """What explain reads of an allowance row (the ledger's ``decide.AllowanceState`` is one)."""

    @property
    def product_code(self) -> str: ...
    @property
    def rule_version_id(self) -> int: ...
    @property
    def period_start(self) -> datetime: ...
    @property
    def period_end(self) -> datetime | None: ...
    @property
    def base_qty(self) -> int: ...
    @property
    def granted_qty(self) -> int: ...
    @property
    def used_qty(self) -> int: ...
    @property
    def held_qty(self) -> int: ...
    @property
    def carried_qty(self) -> int: ...
    @property
    def topup_qty(self) -> int: ...
    @property
    def last_redeemed_at(self) -> datetime | None: ...
    @property
    def home_point_code(self) -> str | None: ...
    @property
    def binding_changes(self) -> int: ...


def serving(allowances: Sequence[AllowanceLike], at: datetime) -> list[AllowanceLike]:
    """The rows explain speaks of at ``at``: started and not ended (a rolling row, with no end, always),
    and those of the holder's latest start even if ended (what it drew last)."""
    if not allowances:
        return []
    latest = max(a.period_start for a in allowances)
    return [
        a
        for a in allowances
        if a.period_start <= at and (a.period_end is None or a.period_end > at or a.period_start == latest)
    ]


def _value(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _batch(b: BatchRelease) -> dict[str, Any]:
    return {"offset_days": b.offset_days, "qty": b.qty, "catch_up": b.catch_up}


def _meters(rule: Rule, row: AllowanceLike, at: datetime, point_code: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule_version_id": row.rule_version_id,
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat() if row.period_end else None,
        "granted_qty": row.granted_qty,
        "used_qty": row.used_qty,
        "held_qty": row.held_qty,
        "carried_qty": row.carried_qty,
        "topup_qty": row.topup_qty,
        "remaining_qty": row.granted_qty - row.used_qty - row.held_qty,
    }
    if rule.fill_cap_qty is not None:
        out["fill_cap"] = {"fill_cap_qty": rule.fill_cap_qty}
    if rule.min_gap_s is not None:
        next_at = row.last_redeemed_at + timedelta(seconds=rule.min_gap_s) if row.last_redeemed_at else None
        out["gap"] = {
            "min_gap_s": rule.min_gap_s,
            "last_redeemed_at": row.last_redeemed_at.isoformat() if row.last_redeemed_at else None,
            "next_allowed_at": next_at.isoformat() if next_at else None,
            "too_soon": bool(next_at and at < next_at),
        }
    if rule.binding_max_changes is not None:
        out["binding"] = {
            "home_point_code": row.home_point_code,
            "changes_used": row.binding_changes,
            "max_changes": rule.binding_max_changes,
            "point_code": point_code,
            "point_ok": None
            if point_code is None or row.home_point_code is None
            else point_code == row.home_point_code,
        }
    if rule.batches:
        terms = rule.terms(row.rule_version_id, 1)
        st = batches.state(terms.batches, row.period_start, at, row.granted_qty, row.used_qty,
                           row.base_qty, row.carried_qty + row.topup_qty)
        out["batches"] = {
            "released": [_batch(b) for b in st.released],
            "pending": [_batch(b) for b in st.pending],
            "catch_up_applies": st.catch_up_applies,
            "limit_qty": st.limit_qty,
            "drawable_qty": max(st.limit_qty - row.used_qty - row.held_qty, 0),
            "next_release_at": st.next_release_at.isoformat() if st.next_release_at else None,
        }
    return out


def explain(
    holder: HolderColumns,
    rules: Sequence[tuple[int, Rule]],
    at: datetime,
    allowances: Sequence[AllowanceLike] = (),
    point_code: str | None = None,
    tz: ZoneInfo = UTC,
) -> list[dict[str, Any]]:
    """One entry per rule version of the holder's type: why it applies or not, and how much.

    ``holder`` is a population of one (``HolderColumns.take``); ``rules`` are (rule_version_id,
    rule) pairs; ``allowances`` are the holder's allowance rows, matched by product.
    """
    assert holder.n == 1, "explain takes a population of one"
    mine = [(vid, r) for vid, r in rules if r.holder_type == holder.holder_type]
    version_of = {r.code: vid for vid, r in mine}
    results = entitlement.compute([r for _, r in mine], {holder.holder_type: holder}, at, tz)
    computed = {res.rule.code: res for res in results}
    taken_by: dict[str, str] = {}
    rows = {a.product_code: a for a in allowances}
    out: list[dict[str, Any]] = []
    for rule in entitlement.ordered([r for _, r in mine]):
        entry: dict[str, Any] = {
            "rule": rule.code,
            "rule_version_id": version_of[rule.code],
            "product": rule.product,
            "holder_type": rule.holder_type,
        }
        res = computed.get(rule.code)
        if res is None:
            in_effect = rule.in_effect(at.astimezone(tz).date())
            entry["applies"] = False
            entry["reason"] = "not in effect" if not in_effect else "outside the period (season)"
            out.append(entry)
            continue
        entry["period"] = {
            "kind": rule.period.kind,
            "days": rule.period.days,
            "start": res.window.start.isoformat(),
            "end": res.window.end.isoformat() if res.window.end else None,
        }
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
            entry["shadowed_by"] = taken_by.get(rule.product)
        if res.eligible[0]:
            taken_by.setdefault(rule.product, rule.code)
        entry["amount"] = amounts.describe(rule.amount, res.parts)
        entry["base_qty"] = int(res.base_qty[0])
        entry["granted_qty"] = int(res.granted_qty[0])
        entry["tiers"] = [
            {"name": t.name, "price_minor": t.price_minor, "qty": int(res.base_qty[0]) if i == 0 else t.qty}
            for i, t in enumerate(rule.tiers)
        ]
        entry["applies"] = bool(res.allotted[0])
        if entry["applies"] and rule.unused.policy != "expire":
            entry["unused"] = rule.unused.model_dump()
        row = rows.get(rule.product)
        if row is not None and entry["applies"]:
            entry["allowance"] = _meters(rule, row, at, point_code)
        out.append(entry)
    return out


def window_text(rule: Rule, at: datetime, tz: ZoneInfo = UTC) -> str:
    """The period window containing ``at`` as text (for messages and the admin pages)."""
    w = window(rule.period, at, tz)
    if w is None:
        return "outside the season"
    end = w.end.isoformat() if w.end else f"{rule.period.days} days from the first fill"
    return f"{w.start.isoformat()} .. {end}"
