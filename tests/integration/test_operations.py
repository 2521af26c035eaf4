"""Operators' view: readiness, Prometheus metrics (requests, redemptions by result, seal lag) and JSON
access logs that carry the request id but never a national id or a token."""

from __future__ import annotations

import json

from card_backend.auth.principal import Role


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def test_metrics_count_requests_and_report_seal_lag(client, auth):
    headers = auth(Role.ADMIN)
    client.get("/api/v1/families", headers=headers)
    body = client.get("/metrics").text
    assert 'card_http_requests_total{method="GET",route="/api/v1/families",status="200"}' in body
    assert "card_journal_unsealed_entries 0.0" in body
    assert "card_seal_lag_seconds 0.0" in body


def test_access_log_has_request_id_and_no_national_id_or_token(client, auth, capsys):
    headers = {**auth(Role.REGISTRAR), "X-Request-ID": "3f1c5a7e-0000-4000-8000-00000000abcd"}
    capsys.readouterr()
    r = client.get("/api/v1/persons/by-national-id/01234567890", headers=headers)
    assert r.status_code in (404, 422)
    out = capsys.readouterr().out
    access = [e for e in _json_lines(out) if e.get("event") == "request"]
    assert access, out
    line = access[-1]
    assert line["request_id"] == "3f1c5a7e-0000-4000-8000-00000000abcd"
    assert line["route"] == "/api/v1/persons/by-national-id/{national_id}"
    assert "01234567890" not in out
    assert headers["Authorization"].split()[1] not in out
