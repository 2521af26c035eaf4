"""Simulation: what a rule set would hand out, and cost, without writing anything.

An administrator proposing a rule change sees, per holder type, governorate, product and period, how
many holders get an allowance, the quantity, and the subsidy it costs, next to the current rules,
plus how many holders gain, lose or see a change in the product. It runs the same entitlement
computation as opening (``entitlement.compute``), and, given the ``carry`` reader, the opening's own
carry-over, so a simulation of a window is what opening that window would grant.

**Lines.** A line is one (holder type, governorate, product, period): holders of different types are
never added together (families and persons both drawing tea are two lines), and rules of one product
with different periods (7-day rolling private gasoline beside 800 L a month of government gasoline)
are two lines, each with its period named (``period_name``). Within a line:

* per window — what opening one window of that period grants: ``base_qty`` (the first, subsidised
  tier), ``granted_qty`` (base + fixed free-price tiers + carry-over, as the opening's ``granted``),
  ``carried_qty`` (the previous window's unused first tier rolled over, up to the rule's cap),
  ``points`` (points the opening credits to the rule's points product for the previous window's
  unused quantity, e.g. bread), and ``subsidy_minor`` on the first-tier quantity the holders may
  draw at the subsidised price, carry-over included (the ledger prices base + carried at tier one);
* per year — the rule's recurring rate normalised to a common horizon: ``base_qty_per_year``,
  ``granted_qty_per_year`` (without carry-over) and ``subsidy_minor_per_year`` are the per-window
  figures times ``windows_per_year``: day 365, week 365/7, rolling N days 365/N (the most a holder
  can draw, redeeming as soon as each window allows), month 12, quarter 4, year 1, season 1 (a
  season comes once a year).

**Why a year.** A per-window figure cannot be compared across a period edit: a gas cylinder every 23
days or every 45 days is "1 cylinder" per window either way, and sugar monthly or quarterly is the
same grams per window, so a difference taken per window shows nothing where the budget changes most.
What a ministry budgets is a quantity and a cost over a fixed horizon; a year is exact for every
calendar kind (×12, ×4, ×1) and for seasons, where 30 days would not be (a month is 28–31 days, a
quarter 90–92), so the difference is taken on the per-year figures. Carry-over and points are not
annualised: they are one-offs of the window being opened (unused quantity moved from the window
before), not a rate, so the difference reports them as they are for that window.

**Difference.** ``difference`` compares proposal and current per (holder type, governorate, product),
whatever the periods, naming the periods on each side: holders, the per-year figures, and the next
window's carry-over and points. ``Change`` counts, per holder type and product, holders who gain the
product, lose it, or keep it with another period or amount (``changed_holders``).

Subsidy is ``quantity × (free price − first-tier price) / price_per_qty``, computed on each rule's
total quantity in a governorate and rounded down once, in integer minor units (Python integers: a
year of a large population overflows 64 bits). Everything is summed over columns with numpy; the
only Python loops are over rules and governorates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from quota.domain import entitlement
from quota.domain.eligibility import BoolArray, HolderColumns, IntArray
from quota.domain.periods import UTC
from quota.domain.rules import PeriodSpec, Rule
from quota.domain.unused import Rollover as Rollover  # the carry reader's answer

CarryReader = Callable[[entitlement.RuleResult], Rollover | None]
"""The opening's carry-over for one rule's result: per holder of ``res.cols``, what rolls over from
the previous window and the points it earns (``None``: nothing to roll). Called at most once per
holder type, product, period, unused policy and window: that is all carry-over depends on."""


@dataclass(frozen=True, slots=True)
class ProductPrice:
    price_per_qty: int
    free_price_minor: int


def period_name(spec: PeriodSpec) -> str:
    """``day``, ``week``, ``month``, ``quarter``, ``year``, ``rolling_23d``, ``season_10-15_03-31``."""
    if spec.kind == "rolling":
        return f"rolling_{spec.days}d"
    if spec.kind == "season":
        return f"season_{spec.start}_{spec.end}"
    return spec.kind


def windows_per_year(spec: PeriodSpec) -> tuple[int, int]:
    """How many windows of ``spec`` a year holds, as a fraction (numerator, denominator)."""
    if spec.kind in ("day", "week", "rolling"):
        days = {"day": 1, "week": 7}.get(spec.kind) or spec.days or 1
        return 365, days
    return {"month": (12, 1), "quarter": (4, 1)}.get(spec.kind, (1, 1))  # year, season: once a year


@dataclass(frozen=True, slots=True)
class Line:
    """One holder type, governorate, product and period: per window and per year (module docstring)."""

    holder_type: str
    governorate: str
    product: str
    period: str  # period_name of the rules summed here
    windows_per_year: float
    holders: int
    base_qty: int  # per window
    granted_qty: int  # per window, carry-over included
    carried_qty: int  # per window: rolled over from the previous window
    points: int  # per window: credited to the points product for the previous window's unused qty
    subsidy_minor: int  # per window, on base + carried
    base_qty_per_year: int
    granted_qty_per_year: int  # without carry-over
    subsidy_minor_per_year: int  # on base, without carry-over


@dataclass(frozen=True, slots=True)
class Delta:
    """Proposed minus current for one holder type, governorate and product, over every period."""

    holder_type: str
    governorate: str
    product: str
    current_periods: tuple[str, ...]  # period names of the current side's lines (none: no line)
    proposed_periods: tuple[str, ...]
    holders: int
    base_qty_per_year: int
    granted_qty_per_year: int
    subsidy_minor_per_year: int
    carried_qty: int  # the next window's carry-over (not annualised)
    points: int


@dataclass(frozen=True, slots=True)
class Change:
    holder_type: str
    product: str
    gained_holders: int
    lost_holders: int
    changed_holders: int = 0  # keep the product with another period or amount


@dataclass(frozen=True)
class Simulation:
    lines: list[Line]
    changes: list[Change] = field(default_factory=list)  # empty unless compared with a baseline

    def totals(self) -> dict[tuple[str, str, str], Line]:
        """Per (holder type, product, period), summed over governorates (governorate ``*``)."""
        out: dict[tuple[str, str, str], Line] = {}
        for ln in self.lines:
            key = (ln.holder_type, ln.product, ln.period)
            t = out.get(key)
            out[key] = ln if t is None else _add_line(t, ln)
        return {k: _national(v) for k, v in sorted(out.items())}


_SUMMED = (
    "holders", "base_qty", "granted_qty", "carried_qty", "points", "subsidy_minor",
    "base_qty_per_year", "granted_qty_per_year", "subsidy_minor_per_year",
)  # fmt: skip


def _add_line(a: Line, b: Line) -> Line:
    sums = [getattr(a, f) + getattr(b, f) for f in _SUMMED]
    return Line(a.holder_type, a.governorate, a.product, a.period, a.windows_per_year, *sums)


def _national(ln: Line) -> Line:
    sums = [getattr(ln, f) for f in _SUMMED]
    return Line(ln.holder_type, "*", ln.product, ln.period, ln.windows_per_year, *sums)


def _sum_by(groups: IntArray, values: IntArray, size: int) -> IntArray:
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, groups, values.astype(np.int64))
    return out


def _lines(
    results: Sequence[entitlement.RuleResult],
    rolled: Sequence[Rollover | None],
    prices: Mapping[str, ProductPrice],
) -> list[Line]:
    acc: dict[tuple[str, str, str, str], list[int]] = {}
    per_year: dict[str, float] = {}
    for res, roll in zip(results, rolled, strict=True):
        rule, mask = res.rule, res.allotted
        g = res.cols.governorate[mask]
        size = len(res.cols.governorates)
        holders = np.bincount(g, minlength=size)
        base = _sum_by(g, res.base_qty[mask], size)
        granted = _sum_by(g, res.granted_qty[mask], size)
        zero = np.zeros(size, dtype=np.int64)
        carried = _sum_by(g, roll.carried_qty[mask], size) if roll is not None else zero
        points = _sum_by(g, roll.points[mask], size) if roll is not None else zero
        price = prices.get(rule.product, ProductPrice(1, 0))
        ppq = max(price.price_per_qty, 1)
        gap = max(price.free_price_minor - rule.tiers[0].price_minor, 0)
        num, den = windows_per_year(rule.period)
        period = period_name(rule.period)
        per_year[period] = num / den
        for i in np.flatnonzero(holders):
            b, gr, c = int(base[i]), int(granted[i]), int(carried[i])
            row = acc.setdefault((rule.holder_type, res.cols.governorates[i], rule.product, period), [0] * 9)
            figures = (
                int(holders[i]), b, gr + c, c, int(points[i]), (b + c) * gap // ppq,
                b * num // den, gr * num // den, b * gap * num // (ppq * den),
            )  # fmt: skip
            for j, v in enumerate(figures):
                row[j] += v
    return [Line(t, g, p, per, per_year[per], *v) for (t, g, p, per), v in sorted(acc.items())]


@dataclass(frozen=True)
class _Holding:
    """Per holder of one (holder type, product): whether it gets an allowance, and the period code
    (a scalar when one rule gives the product) and amounts of that allowance (0 where none)."""

    has: BoolArray
    period: IntArray | int
    base: IntArray
    granted: IntArray


def _holdings(
    results: Sequence[entitlement.RuleResult], codes: dict[str, int]
) -> dict[tuple[str, str], _Holding]:
    by_key: dict[tuple[str, str], list[entitlement.RuleResult]] = {}
    for res in results:
        by_key.setdefault((res.rule.holder_type, res.rule.product), []).append(res)
    out: dict[tuple[str, str], _Holding] = {}
    for key, group in by_key.items():
        code = [codes.setdefault(period_name(r.rule.period), len(codes) + 1) for r in group]
        if len(group) == 1:  # the usual case: the rule's own arrays, nothing copied
            (res,) = group
            out[key] = _Holding(res.allotted, code[0], res.base_qty, res.granted_qty)
            continue
        n = group[0].cols.n
        has, period = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        base, granted = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for res, c in zip(group, code, strict=True):
            # one rule per holder and product (entitlement's shadowing): the rules never overlap, and
            # base and granted are 0 wherever a rule gives nothing
            mask = res.allotted
            has |= mask
            np.copyto(period, c, where=mask)
            np.add(base, res.base_qty, out=base)
            np.add(granted, res.granted_qty, out=granted)
        out[key] = _Holding(has, period, base, granted)
    return out


def _changes(new: Sequence[entitlement.RuleResult], old: Sequence[entitlement.RuleResult]) -> list[Change]:
    codes: dict[str, int] = {}
    a_all, b_all = _holdings(new, codes), _holdings(old, codes)
    out = []
    for key in sorted(set(a_all) | set(b_all)):
        a, b = a_all.get(key), b_all.get(key)
        if a is None or b is None:
            one = a if a is not None else b
            assert one is not None
            count = int(np.count_nonzero(one.has))
            out.append(Change(key[0], key[1], count if a is not None else 0, count if b is not None else 0))
            continue
        both = a.has & b.has
        differs = (a.base != b.base) | (a.granted != b.granted) | (a.period != b.period)
        out.append(
            Change(
                key[0],
                key[1],
                int(np.count_nonzero(a.has & ~b.has)),
                int(np.count_nonzero(b.has & ~a.has)),
                int(np.count_nonzero(both & differs)),
            )
        )
    return out


def _rollovers(
    results: Sequence[entitlement.RuleResult],
    carry: CarryReader | None,
    memo: dict[tuple[object, ...], Rollover | None],
) -> list[Rollover | None]:
    out: list[Rollover | None] = []
    for res in results:
        rule = res.rule
        if carry is None or rule.unused.policy == "expire":
            out.append(None)
            continue
        key = (rule.holder_type, rule.product, rule.period, rule.unused, res.window.start)
        if key not in memo:
            memo[key] = carry(res)
        out.append(memo[key])
    return out


def simulate(
    rules: Sequence[Rule],
    populations: Mapping[str, HolderColumns],
    prices: Mapping[str, ProductPrice],
    at: datetime,
    baseline: Sequence[Rule] | None = None,
    tz: ZoneInfo = UTC,
    carry: CarryReader | None = None,
) -> tuple[Simulation, Simulation | None]:
    """The proposed rules' simulation of the windows containing ``at`` and, with a ``baseline``, the
    baseline's (the changes are on the proposed one). Without ``carry`` no carry-over nor points are
    counted (a population held in memory, with no ledger to read the previous window from)."""
    memo: dict[tuple[object, ...], Rollover | None] = {}
    proposed = entitlement.compute(rules, populations, at, tz)
    new_lines = _lines(proposed, _rollovers(proposed, carry, memo), prices)
    if baseline is None:
        return Simulation(new_lines), None
    current = entitlement.compute(baseline, populations, at, tz)
    old_lines = _lines(current, _rollovers(current, carry, memo), prices)
    return Simulation(new_lines, _changes(proposed, current)), Simulation(old_lines)


_DELTA_SUMS = ("holders", "base_qty_per_year", "granted_qty_per_year", "subsidy_minor_per_year",
               "carried_qty", "points")  # fmt: skip


def _by_product(lines: Sequence[Line]) -> dict[tuple[str, str, str], tuple[set[str], list[int]]]:
    out: dict[tuple[str, str, str], tuple[set[str], list[int]]] = {}
    for ln in lines:
        periods, sums = out.setdefault((ln.holder_type, ln.governorate, ln.product), (set(), [0] * 6))
        periods.add(ln.period)
        for j, name in enumerate(_DELTA_SUMS):
            sums[j] += getattr(ln, name)
    return out


def difference(proposed: Simulation, current: Simulation) -> list[Delta]:
    """Proposed minus current, per holder type, governorate and product (present on either side),
    on the per-year figures (see the module docstring), with the periods of each side named."""
    a, b = _by_product(proposed.lines), _by_product(current.lines)
    out = []
    for key in sorted(set(a) | set(b)):
        pa, x = a.get(key, (set(), [0] * 6))
        pb, y = b.get(key, (set(), [0] * 6))
        sums = [i - j for i, j in zip(x, y, strict=True)]
        out.append(Delta(*key, tuple(sorted(pb)), tuple(sorted(pa)), *sums))
    return out


def national(deltas: Sequence[Delta]) -> list[Delta]:
    """The difference summed over governorates (governorate ``*``), per holder type and product."""
    acc: dict[tuple[str, str], tuple[set[str], set[str], list[int]]] = {}
    for d in deltas:
        cur, new, sums = acc.setdefault((d.holder_type, d.product), (set(), set(), [0] * 6))
        cur.update(d.current_periods)
        new.update(d.proposed_periods)
        for j, name in enumerate(_DELTA_SUMS):
            sums[j] += getattr(d, name)
    return [
        Delta(t, "*", p, tuple(sorted(cur)), tuple(sorted(new)), *sums)
        for (t, p), (cur, new, sums) in sorted(acc.items())
    ]
