from __future__ import annotations

from datetime import date

from card_backend.licence.states import Entry, state_on, transition_problem

ISSUED, EXPIRES = date(2020, 1, 1), date(2025, 1, 1)
HISTORY = [
    Entry(ISSUED, "valid", "issued"),
    Entry(date(2022, 3, 1), "suspended", "speeding"),
    Entry(date(2022, 9, 1), "valid", "suspension served"),
]


def test_state_as_of_a_date_follows_the_history():
    assert state_on(ISSUED, EXPIRES, HISTORY, date(2019, 12, 31)).state == "not_issued"
    assert state_on(ISSUED, EXPIRES, HISTORY, date(2021, 6, 1)).state == "valid"
    s = state_on(ISSUED, EXPIRES, HISTORY, date(2022, 3, 1))
    assert (s.state, s.reason, s.since) == ("suspended", "speeding", date(2022, 3, 1))
    assert state_on(ISSUED, EXPIRES, HISTORY, date(2022, 8, 31)).state == "suspended"
    assert state_on(ISSUED, EXPIRES, HISTORY, date(2022, 9, 1)).state == "valid"


def test_expired_after_expiry_day_but_revoked_stays_revoked():
    assert state_on(ISSUED, EXPIRES, HISTORY, EXPIRES).state == "valid"
    after = state_on(ISSUED, EXPIRES, HISTORY, date(2025, 1, 2))
    assert (after.state, after.since) == ("expired", date(2025, 1, 2))
    revoked = [*HISTORY, Entry(date(2023, 1, 1), "revoked", "drunk driving")]
    assert state_on(ISSUED, EXPIRES, revoked, date(2030, 1, 1)).state == "revoked"


def test_revocation_is_final_and_history_is_not_back_dated():
    revoked = [*HISTORY, Entry(date(2023, 1, 1), "revoked", "x")]
    assert "revoked" in (transition_problem(revoked, ISSUED, Entry(date(2024, 1, 1), "valid")) or "")
    early = Entry(date(2022, 1, 1), "suspended")
    assert "before the last" in (transition_problem(HISTORY, ISSUED, early) or "")
    before_issue = Entry(date(2019, 1, 1), "suspended")
    assert "before the licence" in (transition_problem([], ISSUED, before_issue) or "")
    assert transition_problem(HISTORY, ISSUED, Entry(date(2023, 1, 1), "revoked")) is None
