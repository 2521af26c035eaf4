"""A period opened ahead of its first day, on SQLite and PostgreSQL: what depends on days still to come is
left to that day.

Before, an administrator's ``POST /periods/open {"period_key": "2026-12"}`` on 20 November
- carried November's sugar over as it stood on the 20th, so a family that drew afterwards kept a carry-over
  of sugar it had taken (and one that drew nothing more lost what it left after the 20th);
- ran the rolling refresh as of 1 December and recorded it under that day, so the daily refresh was
  skipped for the rest of November: a car registered on the 21st got no gasoline (found by a helper).
Now such rules are reported as deferred, nothing of them is written, and the worker opens them on the 1st.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from quota.opening import due_rules, open_due, open_period
from tests.integration.rules_seed import touch
from tests.integration.test_opening import rows, setup

NOV = datetime(2026, 11, 18, 12, tzinfo=UTC)
EARLY = datetime(2026, 11, 20, 10, tzinfo=UTC)  # when the administrator opens December
DEC_FIRST = datetime(2026, 12, 1, 0, 10, tzinfo=UTC)


def test_an_opening_ahead_leaves_carry_over_and_rolling_rules_to_their_day(
    session_factory: sessionmaker[Session],
) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        open_period(s, at=NOV)
    with session_factory.begin() as s:
        report = open_period(s, period_key="2026-12", now=EARLY)
    deferred = {d.rule_code: d.reason for d in report.deferred}
    assert deferred["sugar_family"] == "previous_period_running"  # carries unused sugar over
    assert deferred["bread_family"] == "previous_period_running"  # unused bread becomes points
    assert deferred["gas_cylinder_family"] == "rolling_opens_on_its_day"
    assert deferred["gasoline_private"] == "rolling_opens_on_its_day"
    opened = {o.rule_code for o in report.opened}
    assert {"rice_family", "gasoline_government"} <= opened and not opened & set(deferred)
    with session_factory() as s:
        assert all(r["period_start"].month == 11 for r in rows(s, "sugar").values())
        assert any(r["period_start"].month == 12 for r in rows(s, "rice").values())
        # the rolling products are still refreshed every day until December
        due = {rule.code for _, rule in due_rules(s, EARLY + timedelta(days=1))}
    assert {"gas_cylinder_family", "gasoline_private"} <= due


def test_carry_over_into_a_month_opened_ahead_is_what_was_left_at_its_end(
    session_factory: sessionmaker[Session],
) -> None:
    setup(session_factory)
    with session_factory.begin() as s:
        open_period(s, at=NOV)
        touch(s, "family", [1], "sugar", NOV)
    with session_factory.begin() as s:
        open_period(s, period_key="2026-12", now=EARLY)  # family 1 has drawn nothing yet: 2 kg left
    with session_factory.begin() as s:  # then it draws 1.5 kg of its 2 kg before November ends
        s.execute(text("UPDATE allowances SET used_qty = 1500 "
                       "WHERE product_code = 'sugar' AND holder_id = 1"))
    with session_factory.begin() as s:
        first = open_due(s, DEC_FIRST)
    assert first is not None and "sugar_family" in {o.rule_code for o in first.opened}
    with session_factory() as s:
        december = rows(s, "sugar")[1]
    assert december["period_start"].month == 12
    assert (december["carried_qty"], december["granted_qty"]) == (500, 2500)  # not the 1 kg cap of the 20th
