"""The yardstick for (c): a bare FastAPI endpoint doing one database query, served like the real API.

``POST /bare`` takes a small JSON body and runs one single-row UPDATE on the benchmark population, so
the ratio (c)/bare measures what the real redemption path costs above "FastAPI + one query".
"""

from __future__ import annotations

import os
import random

from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

URL = os.environ["CARD_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
HOLDERS = int(os.environ.get("CARD_BENCH_HOLDERS", "1000000"))
pool = AsyncConnectionPool(URL, min_size=4, max_size=16, open=False)
app = FastAPI()


class Body(BaseModel):
    id: str
    card_serial: str
    product_code: str
    quantity_qty: int
    point_code: str


@app.on_event("startup")
async def _open() -> None:
    await pool.open()


@app.post("/bare")
async def bare(body: Body) -> dict[str, object]:
    holder = random.randint(1, HOLDERS)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "UPDATE allowances SET used_qty = used_qty + %s WHERE id = %s RETURNING granted_qty - used_qty",
            (body.quantity_qty, holder),
        )
        row = await cur.fetchone()
    return {"id": body.id, "result": "ok", "remaining": row[0] if row else None}
