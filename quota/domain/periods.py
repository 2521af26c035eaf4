"""Which window an allowance covers, for each period kind.

Calendar windows (day, week from Monday, month, quarter, year) are aligned to the local calendar of
the deployment (``tz``), because "per month" means the citizen's month, not UTC's. A season runs from
a month-day to a month-day and may cross the new year (heating oil: November to March); outside the
season there is no window and nothing is opened.

A rolling window ("a gas cylinder every 23 days") counts from the holder's first redemption, which
opening cannot know: the allowance is opened with ``period_start`` = the opening day and
``period_end`` = ``None`` (not started); the ledger starts the window at the first redemption and
restarts it in place, with the same version and amount, when it has run out. Once a day the opening
job refreshes rolling allowances (``quota.opening``): a window that is running keeps the version and
amount it was opened with; where the holder's *next* window would differ (a new rule version, another
amount, eligibility lost or regained, the rule ended) a renewal row — same holder and product, not
started — takes over from the running window's end (or at once when none is running). A renewal that
grants nothing is how a holder loses a rolling allowance: ``decide.is_current`` does not serve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from quota.domain.rules import PeriodSpec

UTC = ZoneInfo("UTC")


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime | None  # None: a rolling window not started yet

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time(0), tzinfo=tz)


def _add_months(d: date, months: int) -> date:
    m = d.month - 1 + months
    return date(d.year + m // 12, m % 12 + 1, 1)


def _month_day(text: str, year: int) -> date:
    month, day = (int(x) for x in text.split("-"))
    # 29 Feb in a common year falls back to 28 Feb rather than failing a whole season.
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


def window(spec: PeriodSpec, at: datetime, tz: ZoneInfo = UTC) -> Window | None:
    """The window of ``spec`` that contains ``at``; ``None`` when ``at`` is outside a season."""
    local = at.astimezone(tz).date()
    if spec.kind == "day":
        start, end = local, local + timedelta(days=1)
    elif spec.kind == "week":
        start = local - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    elif spec.kind in ("month", "quarter", "year"):
        span = {"month": 1, "quarter": 3, "year": 12}[spec.kind]
        first_month = (local.month - 1) // span * span + 1
        start = date(local.year, first_month, 1)
        end = _add_months(start, span)
    elif spec.kind == "season":
        assert spec.start is not None and spec.end is not None
        for year in (local.year - 1, local.year):
            s = _month_day(spec.start, year)
            e = _month_day(spec.end, year if spec.end >= spec.start else year + 1)
            if s <= local <= e:
                return Window(_midnight(s, tz), _midnight(e + timedelta(days=1), tz))
        return None
    else:
        return Window(_midnight(local, tz), None)
    return Window(_midnight(start, tz), _midnight(end, tz))


def previous_window(spec: PeriodSpec, current: Window, tz: ZoneInfo = UTC) -> Window | None:
    """The window before ``current`` (for carry-over); rolling windows have none."""
    if spec.kind == "rolling":
        return None
    if spec.kind == "season":
        # The previous season is the one that contains the same start day a year earlier.
        local = current.start.astimezone(tz).date()
        return window(spec, _midnight(_month_day(spec.start or "01-01", local.year - 1), tz), tz)
    return window(spec, current.start - timedelta(seconds=1), tz)


def last_season(spec: PeriodSpec, at: datetime, tz: ZoneInfo = UTC) -> Window | None:
    """The last complete window before ``at``: the previous one while a window runs, else the one just
    ended (between two seasons). Rolling periods have none."""
    if spec.kind == "rolling":
        return None
    current = window(spec, at, tz)
    if current is not None:
        return previous_window(spec, current, tz)
    local = at.astimezone(tz).date()
    assert spec.start is not None
    for year in (local.year, local.year - 1):
        start = _midnight(_month_day(spec.start, year), tz)
        if start <= at:
            return window(spec, start, tz)
    return None


def rolling_end(spec: PeriodSpec, first_redeemed_at: datetime) -> datetime:
    """When a rolling window started at the first redemption ends."""
    assert spec.days is not None
    return first_redeemed_at + timedelta(days=spec.days)
