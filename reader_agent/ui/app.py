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

from quota.domain.texts import arabic_digits, local_time, quantity
from reader_agent.agent import PointAgent, Tap, TapRefused
from reader_agent.receipt import Catalogue, moment


class TapIn(BaseModel):
    reader: Annotated[str, Field(min_length=1, max_length=100)]


class RedeemIn(TapIn):
    product_code: Annotated[str, Field(min_length=1, max_length=32)]
    quantity_qty: Annotated[int, Field(gt=0, le=0xFFFFFFFF)]


def _line(catalogue: Catalogue, code: str, available: int, next_at: object = None) -> dict[str, Any]:
    """One product of the tapped card for the clerk: its names, what one redemption may take now in the
    product's unit (as the receipt and the family's message write it), and when more may be drawn."""
    product = catalogue.product(code)
    text_en, text_ar = quantity(available, product.unit)
    when = moment(next_at)
    return {"product_code": code, "available_qty": available, "name_ar": product.name_ar,
            "name_en": product.name_en, "available_en": text_en, "available_ar": arabic_digits(text_ar),
            "next_possible": local_time(when, catalogue.zone) if when else None}


def _products(tap: Tap, catalogue: Catalogue) -> list[dict[str, Any]]:
    if tap.online:
        return [_line(catalogue, q["product_code"], int(q["available_now_qty"]), q.get("next_possible_at"))
                for q in tap.quota]
    return [_line(catalogue, p, b.left_qty) for p, b in sorted(tap.balances.items())]


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
                "products": _products(opened, agent.catalogue),
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
