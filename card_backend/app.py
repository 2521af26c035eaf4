"""The FastAPI application factory. HTTP only: every rule lives in services and ``quota``."""

from __future__ import annotations

import importlib

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from card_backend.config import Settings, get_settings
from card_backend.db import make_engine, make_session_factory
from card_backend.errors import install_error_handlers
from card_backend.observability import (
    MetricsMiddleware,
    configure_logging,
    metrics_response,
    observe_journal,
)

# Each module exposes ``router``; a package joins the API by being listed here.
ROUTER_MODULES: tuple[str, ...] = (
    "card_backend.auth.endpoints",
    "card_backend.family.endpoints",
    "card_backend.vehicle.endpoints",
    "card_backend.licence.endpoints",
    "card_backend.card.endpoints",
    "card_backend.point.endpoints",
    "card_backend.imports.endpoints",
    "card_backend.rules.endpoints",
    "card_backend.ledger.endpoints",
    "card_backend.cardauth.endpoints",
    "card_backend.offline.endpoints",
    "card_backend.walkin.endpoints",
)


def _optional_router_modules() -> list[object]:
    modules: list[object] = []
    for name in ROUTER_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
    return modules


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_json)
    engine = engine or make_engine(settings.database_url, settings.db_pool_size)
    app = FastAPI(
        title="smartcard-ledger",
        version="0.1.0",
        description="Registry, cards and the quota ledger of a national multipurpose smart card.",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], response_model=None)
    def ready() -> dict[str, str] | JSONResponse:
        """The database answers."""
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"error": "database_unavailable", "detail": str(exc)[:200]}, status_code=503)
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics() -> object:
        observe_journal(engine)
        return metrics_response()

    for module in _optional_router_modules():
        app.include_router(module.router)  # type: ignore[attr-defined]
    return app
