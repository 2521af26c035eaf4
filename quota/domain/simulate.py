"""Simulation: what a rule set would hand out, and cost, without writing anything.

An administrator proposing a rule change sees, by governorate and product, how many holders get an
allowance, the quantity, and the subsidy it costs (first-tier quantity × (free price − subsidised
price)), next to the current rules, plus how many holders gain or lose the product. It runs the
same entitlement computation as opening, so a simulation is what opening would do.

Subsidy is computed on each group's total quantity and rounded down once, in integer minor units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np

from quota.domain import entitlement
from quota.domain.eligibility import BoolArray, HolderColumns
from quota.domain.periods import UTC
from quota.domain.rules import Rule


@dataclass(frozen=True, slots=True)
class ProductPrice:
    price_per_qty: int
    free_price_minor: int


@dataclass(frozen=True, slots=True)
class Line:
    governorate: str
    product: str
    holders: int
    base_qty: int
    granted_qty: int
    subsidy_minor: int


@dataclass(frozen=True, slots=True)
class Change:
    product: str
    gained_holders: int
    lost_holders: int


@dataclass(frozen=True)
class Simulation:
    lines: list[Line]
    changes: list[Change]  # empty unless compared with a baseline

    def totals(self) -> dict[str, Line]:
        """Per product, summed over governorates (governorate ``*``)."""
        out: dict[str, Line] = {}
        for ln in self.lines:
            t = out.get(ln.product, Line("*", ln.product, 0, 0, 0, 0))
            out[ln.product] = Line("*", ln.product, t.holders + ln.holders, t.base_qty + ln.base_qty,
                                   t.granted_qty + ln.granted_qty, t.subsidy_minor + ln.subsidy_minor)
        return out


def _sum_by(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, groups, values.astype(np.int64))
    return out


def _lines(results: list[entitlement.RuleResult], prices: Mapping[str, ProductPrice]) -> list[Line]:
    acc: dict[tuple[str, str], list[int]] = {}
    for res in results:
        mask = res.allotted
        g = res.cols.governorate[mask]
        size = len(res.cols.governorates)
        holders = np.bincount(g, minlength=size)
        base = _sum_by(g, res.base_qty[mask], size)
        granted = _sum_by(g, res.granted_qty[mask], size)
        price = prices.get(res.rule.product, ProductPrice(1, 0))
        per_unit_gap = max(price.free_price_minor - res.rule.tiers[0].price_minor, 0)
        for i, name in enumerate(res.cols.governorates):
            if holders[i]:
                row = acc.setdefault((name, res.rule.product), [0, 0, 0, 0])
                row[0] += int(holders[i])
                row[1] += int(base[i])
                row[2] += int(granted[i])
                row[3] += int(base[i]) * per_unit_gap // price.price_per_qty
    return [Line(g, p, *v) for (g, p), v in sorted(acc.items())]


def _allotted_by_product(results: list[entitlement.RuleResult]) -> dict[tuple[str, str], BoolArray]:
    out: dict[tuple[str, str], BoolArray] = {}
    for res in results:
        key = (res.rule.holder_type, res.rule.product)
        out[key] = out.get(key, np.zeros(res.cols.n, dtype=bool)) | res.allotted
    return out


def simulate(
    rules: Sequence[Rule],
    populations: Mapping[str, HolderColumns],
    prices: Mapping[str, ProductPrice],
    at: datetime,
    baseline: Sequence[Rule] | None = None,
    tz: ZoneInfo = UTC,
) -> tuple[Simulation, Simulation | None]:
    """The proposed rules' simulation and, with a ``baseline``, the baseline's (with changes)."""
    proposed = entitlement.compute(rules, populations, at, tz)
    if baseline is None:
        return Simulation(_lines(proposed, prices), []), None
    current = entitlement.compute(baseline, populations, at, tz)
    new, old = _allotted_by_product(proposed), _allotted_by_product(current)
    changes = []
    for key in sorted(set(new) | set(old)):
        n = populations[key[0]].n
        a = new.get(key, np.zeros(n, dtype=bool))
        b = old.get(key, np.zeros(n, dtype=bool))
        changes.append(Change(key[1], int((a & ~b).sum()), int((b & ~a).sum())))
    return Simulation(_lines(proposed, prices), changes), Simulation(_lines(current, prices), [])


def difference(proposed: Simulation, current: Simulation) -> list[Line]:
    """Proposed minus current, per governorate and product (lines present in either)."""
    a = {(ln.governorate, ln.product): ln for ln in proposed.lines}
    b = {(ln.governorate, ln.product): ln for ln in current.lines}
    zero = Line("", "", 0, 0, 0, 0)
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, zero), b.get(key, zero)
        out.append(Line(key[0], key[1], x.holders - y.holders, x.base_qty - y.base_qty,
                        x.granted_qty - y.granted_qty, x.subsidy_minor - y.subsidy_minor))
    return out
