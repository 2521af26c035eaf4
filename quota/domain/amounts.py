"""How much: a rule's amount for every holder at once, with the parts explain shows.

"Per person" goods are family allowances: ``base + per_member × members`` with a family cap
(sugar 1 kg per person, at most 4 kg). Bread uses a table by family-size band instead. Amounts are
integers in the product's smallest unit; no float ever enters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quota.domain.eligibility import HolderColumns, IntArray
from quota.domain.rules import Amount


@dataclass(frozen=True)
class AmountParts:
    """The arithmetic per holder: ``members`` counted, ``band`` used (-1: none), before and after cap."""

    members: IntArray
    band: IntArray
    uncapped_qty: IntArray
    qty: IntArray


def compute(amount: Amount, cols: HolderColumns) -> AmountParts:
    n = cols.n
    members = np.zeros(n, dtype=np.int64)
    band = np.full(n, -1, dtype=np.int64)
    if amount.bands is not None:
        raw = np.zeros(n, dtype=np.int64)
        # Later bands do not override earlier ones: the first band that matches wins.
        for i in range(len(amount.bands) - 1, -1, -1):
            b = amount.bands[i]
            hit = cols.family_size >= b.min_size
            if b.max_size is not None:
                hit &= cols.family_size <= b.max_size
            raw = np.where(hit, b.qty, raw)
            band = np.where(hit, i, band)
    else:
        if amount.per_member_qty:
            members = cols.members_aged(amount.member_ages) if amount.member_ages else cols.family_size
        raw = amount.base_qty + amount.per_member_qty * members
    qty = raw if amount.cap_qty is None else np.minimum(raw, amount.cap_qty)
    return AmountParts(members=members, band=band, uncapped_qty=raw, qty=qty.astype(np.int64))


def describe(amount: Amount, parts: AmountParts, index: int = 0) -> str:
    """The arithmetic for one holder, in words a clerk can read back to a citizen."""
    if amount.bands is not None:
        b = int(parts.band[index])
        if b < 0:
            text = "family size in no band → 0"
        else:
            band = amount.bands[b]
            top = "+" if band.max_size is None else f"..{band.max_size}"
            text = f"band {band.min_size}{top} members → {band.qty}"
    else:
        text = f"{amount.base_qty} + {amount.per_member_qty} × {int(parts.members[index])} members"
        text += f" = {int(parts.uncapped_qty[index])}"
    if amount.cap_qty is not None:
        text += f", cap {amount.cap_qty} → {int(parts.qty[index])}"
    return text
