"""Batches: a period's amount released in dated parts (heating oil: 2 × 100 L per winter).

Semantics, chosen so the ledger decides from the allowance row alone (no history on the hot path):

* Regular batches release cumulatively: at time ``t`` a holder may have drawn in total at most the sum
  of the regular batches released by ``t`` (``offset_days`` after the period start), never more than
  the allowance's granted quantity. A batch not drawn in its turn is not lost: it stays drawable.
* A **catch-up batch** is for holders who missed an earlier batch — in the field, families a
  distribution round did not reach. From its date, a holder who has drawn *nothing* yet
  (``used_qty == 0``) may also draw the catch-up quantity early, so they catch up with neighbours
  served in the first round; the season total (granted) still bounds it. Holders already served
  wait for the next regular batch.
* Batches gate the **subsidised base** (the rule's amount, ``base_qty``) only. Carried and topped-up
  quantity (one-off, already granted) is drawable at once; the later price tiers (heating oil's 50 L
  at the free price per card) once the batches have released the whole base — tiers are priced by
  position in the period (``decide.price_charges``), so the free slice lies after the base and
  opening it earlier would sell the next batch's subsidised fuel ahead of its date.
* ``unserved`` lists holders of a batch-released product who drew nothing in a season: the next
  season gives them priority (``quota.opening`` / the report endpoint reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from quota.domain.terms import BatchRelease


@dataclass(frozen=True, slots=True)
class BatchState:
    """What explain shows: which batches are out and how much may be drawn in total now."""

    released: tuple[BatchRelease, ...]
    pending: tuple[BatchRelease, ...]
    catch_up_applies: bool
    limit_qty: int
    next_release_at: datetime | None


def release_at(batch: BatchRelease, period_start: datetime) -> datetime:
    return period_start + timedelta(days=batch.offset_days)


def state(
    batches: tuple[BatchRelease, ...], period_start: datetime, at: datetime, granted_qty: int, used_qty: int,
    base_qty: int | None = None, oneoff_qty: int = 0,
) -> BatchState:
    """The batch state of one allowance at ``at`` (no batches: the whole granted quantity).

    ``base_qty`` is what the batches gate (None: all of ``granted_qty``); ``oneoff_qty`` the carried
    and topped-up quantity, never gated. Once the released batches cover the base, the whole grant
    (later tiers included) is drawable."""
    if not batches:
        return BatchState((), (), False, granted_qty, None)
    released = tuple(b for b in batches if release_at(b, period_start) <= at)
    pending = tuple(b for b in batches if release_at(b, period_start) > at)
    regular = sum(b.qty for b in released if not b.catch_up)
    catch_up = used_qty == 0 and any(b.catch_up for b in released)
    extra = sum(b.qty for b in released if b.catch_up) if catch_up else 0
    nxt = min((release_at(b, period_start) for b in pending), default=None)
    gated = regular + extra
    base = granted_qty if base_qty is None else base_qty
    limit = granted_qty if gated >= base else min(granted_qty, gated + oneoff_qty)
    return BatchState(released, pending, catch_up, limit, nxt)


def limit_qty(
    batches: tuple[BatchRelease, ...], period_start: datetime, at: datetime, granted_qty: int, used_qty: int,
    base_qty: int | None = None, oneoff_qty: int = 0,
) -> int:
    """The most a holder may have drawn in total by ``at``: ``used + q <= limit`` for a debit."""
    return state(batches, period_start, at, granted_qty, used_qty, base_qty, oneoff_qty).limit_qty


def unserved(holder_ids: npt.NDArray[np.int64], used_qty: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Holders who drew nothing in a season, sorted: next season's priority list."""
    return np.sort(holder_ids[used_qty == 0])
