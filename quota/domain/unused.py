"""Unused quota at period end: expire, carry over up to a cap, or convert to points.

Only the first price tier can be unused in a way that matters: it is the subsidised entitlement
(computed amount + earlier carry + top-ups), and debits draw it first. The fixed free-price tiers are
a right to buy, not a benefit, so they never carry. Computed for every holder at once when the next
period is opened.

Points: ``points_per_qty`` points per ``price_per_qty`` units left (e.g. 10 points per unused bread
bundle, or per unused litre), rounded down, credited to the holder's allowance of the points product
(Egypt's bread points), which the holder spends on other goods at their point price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quota.domain.rules import UnusedSpec

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Rollover:
    """Per previous allowance: unused first-tier qty, what carries into the next period, points."""

    unused_qty: IntArray
    carried_qty: IntArray
    points: IntArray


def unused_first_tier(
    base_qty: IntArray, carried_qty: IntArray, topup_qty: IntArray, used_qty: IntArray, held_qty: IntArray
) -> IntArray:
    left: IntArray = np.maximum(base_qty + carried_qty + topup_qty - used_qty - held_qty, 0).astype(np.int64)
    return left


def rollover(spec: UnusedSpec, unused_qty: IntArray, price_per_qty: int) -> Rollover:
    zero = np.zeros_like(unused_qty)
    if spec.policy == "carry_over":
        return Rollover(unused_qty, np.minimum(unused_qty, spec.carry_cap_qty), zero)
    if spec.policy == "points":
        return Rollover(unused_qty, zero, unused_qty * spec.points_per_qty // max(price_per_qty, 1))
    return Rollover(unused_qty, zero, zero)
