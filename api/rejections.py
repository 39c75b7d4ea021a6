"""Rejections: listed, exported as a reject file, closed by hand."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from litestar import Controller, Request, Response, get, post
from litestar.params import Body, QueryParameter
from msgspec import Meta

from api.negotiation import choose, download
from api.problems import problem_responses
from api.schemas import CSV, JSON, RejectionPage, TablePath
from api.state import DataTables, Pool
from api.tables import fetch_json, known_table
from dataarch.logs import event
from dataarch.rejects import Rejected, received, reject_files

log = logging.getLogger("dataarch.api")
ErrorId = Annotated[int, Meta(ge=1, le=2**63 - 1)]
FormatQuery = Annotated[Literal["json", "csv"] | None, QueryParameter(name="format")]


@dataclass
class CloseRequest:
    ids: Annotated[list[ErrorId], Meta(min_length=1, max_length=10_000)]
    """error_id of each rejection to close"""
    note: Annotated[str, Meta(min_length=1, max_length=2000)]
    """why: what was done about them"""
    by: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    """who closes them (default: the API's database role)"""


@dataclass
class Closed:
    closed: list[int]
    not_open: list[int]
    unknown: list[int]


class RejectionsController(Controller):
    tags = ["rejections"]

    @get(
        "/tables/{table:str}/rejections", opt={"scope": "read", "produces": [JSON, CSV]},
        operation_id="listRejections",
        summary="Logged rejections of a table, newest first; as CSV, the reject file",
        description=(
            "JSON: a page of rejections with their status (open until a later batch inserts"
            " the id, resolved, or closed by hand). CSV (format=csv or Accept: text/csv): every"
            " matching rejected row, oldest first, as the header-less file that `dataarch"
            " rejections export` writes, to edit and send again (rows that cannot be written"
            " as the table's columns are left out; the JSON listing has them)."
        ),
        responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    async def list_rejections(
        self,
        tables: DataTables,
        request: Request,
        table: TablePath,
        pool: Pool,
        batch_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
        status: Annotated[Literal["open", "resolved", "closed"] | None, QueryParameter()] = None,
        reason: Annotated[str | None, QueryParameter(max_length=40)] = None,
        since: Annotated[
            datetime | None, QueryParameter(description="received at or after")
        ] = None,
        limit: Annotated[
            int | None, QueryParameter(ge=1, le=1000, description="default: 100; as CSV, all")
        ] = None,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
        fmt: FormatQuery = None,
    ) -> Response[RejectionPage]:
        known_table(tables, table)
        if choose(request, fmt, [JSON, CSV]) == CSV:
            async with pool.connection() as conn:
                columns = (await (await conn.execute(
                    "select _table_columns(%s)", (table,))).fetchone())[0]  # fmt: skip
                cursor = await conn.execute(
                    "select batch_id, source, place, raw_line, raw_row::text, reason_code, field,"
                    " message from rejected_records(%s, %s, %s, %s, %s) limit %s offset %s",
                    (table, batch_id, status, reason, since, limit, offset),
                )
                rows = [
                    Rejected(*row[:4], received(row[4]), *row[5:])
                    for row in await cursor.fetchall()
                ]
            records, _, _ = reject_files(rows, columns)
            return Response(
                content=records, media_type=CSV, headers=download(f"{table}.reject.csv")
            )
        page = await fetch_json(
            pool, "select table_rejections(%s, %s, %s, %s, %s, %s, %s)::text",
            (table, batch_id, status, reason, since, limit or 100, offset),
        )  # fmt: skip
        return Response(content=page or b"", media_type=JSON)

    @post(
        "/rejections/close", status_code=200, opt={"scope": "admin"},
        operation_id="closeRejections", summary="Close open rejections by hand, with a note",
        description="For a rejection no later row will resolve (one without a usable id, say)."
        " Answers which were closed, which were not open and which are unknown.",
        responses=problem_responses(400, 401, 403, 406, 503),
    )  # fmt: skip
    async def close_rejections(
        self, pool: Pool, data: Annotated[CloseRequest, Body()]
    ) -> Response[Closed]:
        closed = await fetch_json(
            pool, "select close_rejections(%s, %s, %s)::text", (data.ids, data.note, data.by)
        )
        event(log, "rejections closed", result=json.loads(closed or b"{}"))
        return Response(content=closed or b"", media_type=JSON)
