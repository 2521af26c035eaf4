"""Ledger refusals as named errors, rendered once by ``card_backend.errors`` as ``{"error", "detail"}``."""

from __future__ import annotations

from card_backend.errors import Conflict, NotFound, PermissionDenied


class LedgerRefused(Conflict):
    """A refused movement (409): ``code`` is the ledger's result, ``detail`` the stored answer."""


class HoldUnknown(NotFound):
    code = "hold_unknown"


class WrongPoint(PermissionDenied):
    code = "wrong_point"


class LedgerBusy(Conflict):
    code = "ledger_busy"
    status = 503
