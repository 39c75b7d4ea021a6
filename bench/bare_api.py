"""http_overhead's bound: the least any service on dataarch's stack can add.
A bare Litestar app on the same uvicorn (httptools; uvloop when installed,
as `dataarch serve`) whose one route forwards a POST of rows to the same
database call through a psycopg pool and returns its answer: no token, no
metrics, no logging, no problem documents. Run by the bench:
`python -m uvicorn bench.bare_api:app` with DATABASE_URL set."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Request, Response, get, post
from psycopg_pool import AsyncConnectionPool

INGEST = "select r::text from ingest_batch_json(%s, %s, 'per_row', 'api') as r"


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    conninfo = os.environ["DATABASE_URL"]
    kwargs = {"autocommit": True}
    async with AsyncConnectionPool(conninfo, kwargs=kwargs, min_size=2, open=False) as pool:
        app.state.pool = pool
        yield


@post("/tables/{table:str}/rows", status_code=200)
async def ingest(request: Request, table: str) -> Response:
    body = (await request.body()).decode()
    async with request.app.state.pool.connection() as conn:
        cursor = await conn.execute(INGEST, (table, body))
        (answer,) = await cursor.fetchone()
    return Response(content=answer.encode(), media_type="application/json")


@get("/health", sync_to_thread=False)
def health() -> str:
    return "ok"


app = Litestar([ingest, health], lifespan=[lifespan], logging_config=None)
