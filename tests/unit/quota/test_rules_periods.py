"""Period windows for every kind, batches with catch-up, and unused quota at rollover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from quota.domain import batches, periods, unused
from quota.domain.rules import PeriodSpec, UnusedSpec
from quota.domain.terms import BatchRelease

AT = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        (PeriodSpec(kind="day"), utc(2026, 11, 18), utc(2026, 11, 19)),
        (PeriodSpec(kind="week"), utc(2026, 11, 16), utc(2026, 11, 23)),
        (PeriodSpec(kind="month"), utc(2026, 11, 1), utc(2026, 12, 1)),
        (PeriodSpec(kind="quarter"), utc(2026, 10, 1), utc(2027, 1, 1)),
        (PeriodSpec(kind="year"), utc(2026, 1, 1), utc(2027, 1, 1)),
        (PeriodSpec(kind="season", start="10-15", end="03-31"), utc(2026, 10, 15), utc(2027, 4, 1)),
        (PeriodSpec(kind="season", start="11-01", end="11-30"), utc(2026, 11, 1), utc(2026, 12, 1)),
    ],
)
def test_calendar_windows(spec: PeriodSpec, start: datetime, end: datetime) -> None:
    w = periods.window(spec, AT)
    assert w is not None and (w.start, w.end) == (start, end)
    assert w.contains(AT) and not w.contains(end)


def test_season_crossing_the_new_year_seen_from_january() -> None:
    w = periods.window(PeriodSpec(kind="season", start="10-15", end="03-31"), utc(2027, 2, 1))
    assert w is not None and (w.start, w.end) == (utc(2026, 10, 15), utc(2027, 4, 1))


def test_outside_the_season_there_is_no_window() -> None:
    assert periods.window(PeriodSpec(kind="season", start="10-15", end="03-31"), utc(2026, 7, 1)) is None


def test_rolling_window_is_not_started_until_the_first_fill() -> None:
    spec = PeriodSpec(kind="rolling", days=23)
    w = periods.window(spec, AT)
    assert w is not None and w.start == utc(2026, 11, 18) and w.end is None
    assert periods.rolling_end(spec, AT) == AT + timedelta(days=23)
    assert periods.previous_window(spec, w) is None


def test_calendar_windows_follow_the_local_calendar() -> None:
    damascus = ZoneInfo("Asia/Damascus")  # UTC+3: 22:00 UTC on 30 Nov is already 1 Dec there
    w = periods.window(PeriodSpec(kind="month"), utc(2026, 11, 30, 22), damascus)
    assert w is not None and w.start == datetime(2026, 12, 1, tzinfo=damascus)


def test_previous_window() -> None:
    month = PeriodSpec(kind="month")
    cur = periods.window(month, AT)
    assert cur is not None
    prev = periods.previous_window(month, cur)
    assert prev is not None and (prev.start, prev.end) == (utc(2026, 10, 1), utc(2026, 11, 1))
    season = PeriodSpec(kind="season", start="10-15", end="03-31")
    cur_s = periods.window(season, AT)
    assert cur_s is not None
    prev_s = periods.previous_window(season, cur_s)
    assert prev_s is not None and prev_s.start == utc(2025, 10, 15)


HEATING = (BatchRelease(0, 100_000), BatchRelease(45, 100_000, catch_up=True), BatchRelease(75, 100_000))
START = utc(2026, 10, 15)


def test_batches_release_on_their_dates() -> None:
    day = timedelta(days=1)
    assert batches.limit_qty(HEATING, START, START, 200_000, 50_000) == 100_000
    assert (
        batches.limit_qty(HEATING, START, START + 75 * day - timedelta(milliseconds=1), 200_000, 50_000)
        == 100_000
    )
    assert batches.limit_qty(HEATING, START, START + 75 * day, 200_000, 50_000) == 200_000


def test_catch_up_batch_opens_early_only_for_holders_who_drew_nothing() -> None:
    at = START + timedelta(days=50)
    assert batches.limit_qty(HEATING, START, at, 200_000, used_qty=0) == 200_000
    assert batches.limit_qty(HEATING, START, at, 200_000, used_qty=100_000) == 100_000
    before = START + timedelta(days=44)
    assert batches.limit_qty(HEATING, START, before, 200_000, used_qty=0) == 100_000


def test_batch_state_names_the_next_release_and_never_exceeds_granted() -> None:
    st = batches.state(HEATING, START, START + timedelta(days=80), 150_000, 0)
    assert st.limit_qty == 150_000 and st.next_release_at is None
    st = batches.state(HEATING, START, START + timedelta(days=1), 200_000, 0)
    assert st.next_release_at == START + timedelta(days=45) and len(st.pending) == 2


def test_no_batches_means_the_whole_grant() -> None:
    assert batches.limit_qty((), START, START, 200_000, 0) == 200_000


def test_unserved_holders_for_next_season_priority() -> None:
    ids = np.array([5, 3, 9, 1], dtype=np.int64)
    used = np.array([0, 100, 0, 0], dtype=np.int64)
    assert batches.unserved(ids, used).tolist() == [1, 5, 9]


def _unused() -> np.ndarray:
    base = np.array([4000, 4000, 4000, 2000], dtype=np.int64)
    carried = np.array([0, 500, 0, 0], dtype=np.int64)
    topup = np.array([0, 0, 1000, 0], dtype=np.int64)
    used = np.array([1000, 4200, 0, 2500], dtype=np.int64)  # the second drew into its earlier carry
    held = np.array([0, 0, 500, 0], dtype=np.int64)
    return unused.unused_first_tier(base, carried, topup, used, held)


def test_unused_first_tier_counts_carry_and_topups_and_never_goes_negative() -> None:
    # 4000 base + 500 carried - 4200 used: the 300 left of the earlier carry is unused too
    assert _unused().tolist() == [3000, 300, 4500, 0]


def test_carry_over_is_capped() -> None:
    r = unused.rollover(UnusedSpec(policy="carry_over", carry_cap_qty=1000), _unused(), 1000)
    assert r.carried_qty.tolist() == [1000, 300, 1000, 0] and r.points.tolist() == [0, 0, 0, 0]


def test_points_conversion_at_a_rate_per_price_unit() -> None:
    r = unused.rollover(UnusedSpec(policy="points", points_per_qty=10), _unused(), 1000)
    assert r.points.tolist() == [30, 3, 45, 0] and r.carried_qty.tolist() == [0, 0, 0, 0]


def test_expire_keeps_nothing() -> None:
    r = unused.rollover(UnusedSpec(), _unused(), 1000)
    assert r.carried_qty.sum() == 0 and r.points.sum() == 0


def test_batches_gate_the_base_only_later_tiers_and_one_offs_are_added() -> None:
    day = timedelta(days=1)
    # 200 L base, 50 L at the free price (granted 250 L), 40 L topped up (granted 290 L)
    assert batches.limit_qty(HEATING, START, START, 250_000, 0, 200_000) == 100_000
    assert batches.limit_qty(HEATING, START, START + 75 * day, 250_000, 100_000, 200_000) == 250_000
    assert batches.limit_qty(HEATING, START, START, 290_000, 0, 200_000, 40_000) == 140_000
    assert batches.limit_qty(HEATING, START, START + 75 * day, 290_000, 100_000, 200_000, 40_000) == 290_000
