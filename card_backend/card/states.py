"""The card state machine (pure). A card that left ``active`` never comes back: a blocked or lost card
is replaced by a NEW card for the same holder, so a found "lost" card cannot be reused by a thief.

    active ──block──▶ blocked ──replace──▶ replaced
       └────lost────▶ lost ────replace──▶ replaced
"""

from __future__ import annotations

ACTIVE, BLOCKED, LOST, REPLACED = "active", "blocked", "lost", "replaced"
HOLDER_TYPES = ("family", "vehicle")

TRANSITIONS: dict[str, frozenset[str]] = {
    ACTIVE: frozenset({BLOCKED, LOST}),
    BLOCKED: frozenset({REPLACED}),
    LOST: frozenset({REPLACED}),
    REPLACED: frozenset(),
}


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())
