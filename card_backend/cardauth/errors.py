"""Refusals of card authentication, as named domain errors (rendered once by card_backend.errors)."""

from __future__ import annotations

from card_backend.errors import Conflict, NotFound, PermissionDenied


class CardAuthFailed(Conflict):
    """The answer is not this card's signature (a clone, a forged or altered answer, no key on file)."""

    code = "card_auth_failed"


class CounterReplayed(Conflict):
    """A genuine signature whose counter was already seen: a replayed answer or a restored card."""

    code = "counter_replayed"


class CardBlocked(Conflict):
    code = "card_blocked"


class CardUnknown(NotFound):
    code = "card_unknown"


class ChallengeUnknown(NotFound):
    """No such challenge for this device (challenges are bound to the device that asked)."""

    code = "challenge_unknown"


class ChallengeExpired(Conflict):
    code = "challenge_expired"


class ExistsWithDifferentPayload(Conflict):
    code = "exists_with_different_payload"


class WrongPoint(PermissionDenied):
    code = "wrong_point"


class InvalidPublicKey(Conflict):
    code = "invalid_public_key"
    status = 422
