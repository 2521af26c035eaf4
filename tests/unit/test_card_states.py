from __future__ import annotations

import pytest

from card_backend.card.states import TRANSITIONS, can_move


@pytest.mark.parametrize("state", ["blocked", "lost", "replaced"])
def test_a_card_that_left_active_never_becomes_active_again(state: str):
    assert not can_move(state, "active")


def test_allowed_moves():
    assert can_move("active", "blocked") and can_move("active", "lost")
    assert can_move("blocked", "replaced") and can_move("lost", "replaced")
    assert not can_move("active", "replaced")
    assert TRANSITIONS["replaced"] == frozenset()
