"""The backend as the agent sees it: httpx with the device token, and two kinds of failure.

``BackendUnavailable`` (no connection, timeout, 5xx) means "serve offline if allowed and retry
later with the same id"; ``BackendRefused`` (4xx with ``{"error": code}``) is a final answer. Every
call has a bounded timeout so a hung network never freezes a point.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 3.0


class BackendError(Exception):
    pass


class BackendUnavailable(BackendError):
    """The backend could not be reached or failed; the request may or may not have been applied."""


class BackendRefused(BackendError):
    def __init__(self, status: int, code: str, detail: Any) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class BackendClient:
    def __init__(self, base_url: str, device_token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {device_token}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"{method} {path}: {exc!r}") from exc
        if response.status_code >= 500:
            raise BackendUnavailable(f"{method} {path}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise BackendUnavailable(f"{method} {path}: answer is not JSON") from exc
        if response.status_code >= 400:
            code = body.get("error", "http_error") if isinstance(body, dict) else "http_error"
            detail = body.get("detail") if isinstance(body, dict) else body
            raise BackendRefused(response.status_code, str(code), detail)
        return body

    def public_keys(self) -> dict[str, str]:
        return dict(self._call("GET", "/api/v1/card-auth/keys"))

    def challenge(self) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/card-auth/challenge"))

    def verify(
        self,
        challenge_id: str,
        serial: str,
        counter: int,
        signature: bytes,
        offline_balances: list[tuple[bytes, int]] | None = None,
    ) -> dict[str, Any]:
        body = {
            "challenge_id": challenge_id,
            "card_serial": serial,
            "counter": counter,
            "signature_hex": signature.hex(),
            "offline_balances": [
                {"certificate_hex": blob.hex(), "spent_qty": spent} for blob, spent in offline_balances or []
            ],
        }
        return dict(self._call("POST", "/api/v1/card-auth/verify", body))

    def redeem(self, item: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/api/v1/card-auth/redeem", item))

    def sync(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(self._call("POST", "/api/v1/offline/sync", {"items": items})["results"])

    def undelivered(self, rid: str) -> dict[str, Any]:
        """Reversal advice: debit ``rid`` was not handed over (its answer was lost)."""
        return dict(self._call("POST", f"/api/v1/redemptions/{rid}/undelivered"))
