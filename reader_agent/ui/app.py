"""The clerk page: read the card in a reader, show its quota, confirm a product and quantity, print.

A tap opens the card and keeps it open until the clerk confirms (the card must still be in the
reader: the confirmation is the card's own signature) or taps again. One agent, one page, served on
127.0.0.1 only; the agent's device token never reaches the browser.
"""

from __future__ import annotations

import html
import threading
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from pydantic import BaseModel, Field

from reader_agent.agent import PointAgent, Tap, TapRefused


class TapIn(BaseModel):
    reader: Annotated[str, Field(min_length=1, max_length=100)]


class RedeemIn(TapIn):
    product_code: Annotated[str, Field(min_length=1, max_length=32)]
    quantity_qty: Annotated[int, Field(gt=0, le=0xFFFFFFFF)]


def _products(tap: Tap) -> list[dict[str, Any]]:
    if tap.online:
        return [
            {"product_code": q["product_code"], "available_qty": q["available_now_qty"]} for q in tap.quota
        ]
    return [{"product_code": p, "available_qty": b.left_qty} for p, b in sorted(tap.balances.items())]


def create_clerk_app(agent: PointAgent, readers: list[str]) -> FastAPI:
    app = FastAPI(title="clerk", docs_url=None, redoc_url=None, openapi_url=None)
    open_taps: dict[str, Tap] = {}
    lock = threading.Lock()
    template = resources.files("reader_agent.ui").joinpath("page.html").read_text("utf-8")

    def _drop(reader: str) -> None:
        tap = open_taps.pop(reader, None)
        if tap is not None:
            tap.close()

    registry = CollectorRegistry()
    depth = Gauge(
        "card_agent_outbox_depth",
        "Redemptions this point still owes the backend (served offline or signed, not yet answered)",
        registry=registry,
    )
    depth.set_function(agent.outbox.depth)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus scrape of the point: its outbox depth grows while it serves offline."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        options = "".join(f"<option>{html.escape(r)}</option>" for r in readers)
        return template.replace("{{POINT}}", html.escape(agent.point_code)).replace("{{READERS}}", options)

    @app.post("/tap")
    def tap(body: TapIn) -> dict[str, Any]:
        with lock:
            _drop(body.reader)
            try:
                opened = agent.tap(body.reader)
            except TapRefused as exc:
                return {"result": exc.code}
            open_taps[body.reader] = opened
            return {
                "result": "ok",
                "card_serial": opened.info.serial,
                "online": opened.online,
                "products": _products(opened),
            }

    @app.post("/redeem")
    def redeem(body: RedeemIn) -> dict[str, Any]:
        with lock:
            opened = open_taps.pop(body.reader, None)
            if opened is None:
                return {"result": "no_card_read"}
            try:
                done = agent.redeem(opened, body.product_code, body.quantity_qty)
            finally:
                opened.close()
            return {"result": done.result, "offline": done.offline, "receipt": done.receipt}

    return app
