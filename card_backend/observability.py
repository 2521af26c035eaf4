"""Request ids, JSON logs without secrets or national ids, and Prometheus metrics."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog
from asgi_correlation_id import correlation_id
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("card_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "card_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REDEMPTIONS = Counter("card_redemptions_total", "Redemptions by result", ["result"])
UNSEALED = Gauge("card_journal_unsealed_entries", "Journal entries not yet sealed into the hash chain")
SEAL_LAG = Gauge("card_seal_lag_seconds", "Age of the oldest journal entry not yet sealed")
_access = structlog.get_logger("card.access")

# National ids (11 digits) are masked; a SHA-256 digest (64 hex digits: a seal's hash, the anchor an
# auditor keeps from the log) is left whole: about one in 22 holds a run of exactly 11 digits.
_NATIONAL_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])|(?<!\d)\d{11}(?!\d)")
_SECRET_KEYS = {"password", "token", "access_token", "secret", "authorization", "pin"}


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask national ids and drop secrets from every log event."""
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
        elif isinstance(event[key], str):
            event[key] = _NATIONAL_ID.sub(_mask, str(event[key]))
    return event


def _mask(match: re.Match[str]) -> str:
    found = match.group(0)
    return found if len(found) == 64 else found[:3] + "********"


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is now (a cached logger must follow redirection)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(json_logs: bool = True) -> None:
    """JSON lines for structlog and for the standard library's loggers (the engine's, uvicorn's)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json_logs
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class MetricsMiddleware:
    """Count and time every request by its route template, and write one JSON access line with the
    request id (never the body, the query string or any header: those may hold ids or tokens).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task group and memory streams
    per request, which showed as a tenth of the redemption endpoint's CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        request_id = correlation_id.get()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")
            path = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            elapsed = time.perf_counter() - start
            REQUESTS.labels(method, path, str(status)).inc()
            LATENCY.labels(method, path).observe(elapsed)
            _access.info(
                "request",
                method=method,
                route=path,
                status=status,
                ms=round(elapsed * 1000, 2),
                request_id=request_id,
            )


def observe_journal(engine: Engine) -> None:
    """Seal lag, read at scrape time: how many entries and how old the oldest one the chain lacks."""
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*), min(created_at) FROM journal "
                    "WHERE seq > coalesce((SELECT max(last_seq) FROM seals), 0)"
                )
            ).one()
    except SQLAlchemyError:
        return
    UNSEALED.set(row[0] or 0)
    oldest = row[1]
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    SEAL_LAG.set(0 if oldest is None else max(0.0, (datetime.now(UTC) - oldest).total_seconds()))


def metrics_response() -> Response:
    """Metrics of this process, or of all workers when PROMETHEUS_MULTIPROC_DIR is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
