"""The HTTP service: a thin Litestar app in front of the database.

Request bodies go to ingest_batch_json as the bytes that arrived and its JSON
comes back as it is: Python does no per-row work. Every error is an RFC 9457
problem document; SQLSTATE_TO_HTTP is the one place that says which database
error becomes which status.
"""

from __future__ import annotations

import hmac
import json
import logging
import select
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

import anyio
import psycopg
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import Components, OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from msgspec import Meta
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from backup import (
    BackupError,
    BackupInfo,
    BusyError,
    RestoreResult,
    StorageError,
    backup_tables,
    list_backups,
    restore_table,
)
from backup.store import backup_files
from backup.store import newest as store_newest
from dataarch import db, errors, migrate
from dataarch.csvrecords import CsvError, Dialect
from dataarch.logs import event, timed
from dataarch.rejects import Rejected, reject_files
from dataarch.settings import ApiToken, Settings
from reports import PAGES, load_data, render_page

log = logging.getLogger("dataarch.api")

TABLES = ("departments", "jobs", "employees")
ID_COLUMNS = {"departments": "department_id", "jobs": "job_id", "employees": "employee_id"}
# 1000 rows whose 200-character names are all \\uXXXX escapes, with room to spare.
MAX_BODY_BYTES = 2 * 1024 * 1024
JSON = "application/json"

RETRY_SOON = {"Retry-After": "1"}  # on every 503: the cause passes by itself


# -- response shapes, for the OpenAPI document ------------------------------------------


@dataclass
class Rejection:
    index: int
    reason_code: str
    field: str | None
    message: str


@dataclass
class BatchSummary:
    batch_id: int
    table: str
    mode: str
    submitted: int
    inserted: int
    rejected: int
    rejections: list[Rejection]


@dataclass
class RejectionPage:
    total: int
    limit: int
    offset: int
    items: list[dict[str, Any]]


@dataclass
class Health:
    status: Literal["ok", "degraded", "unavailable"]
    database: Literal["up", "busy", "down"]


@dataclass
class Problem:
    """RFC 9457 problem details."""

    status: int
    title: str
    detail: str = ""
    type: str = "about:blank"
    sqlstate: str | None = None
    hint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _problems(*statuses: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "malformed request: not JSON, not an array of objects, bad parameter",
        401: "missing or wrong bearer token",
        403: "the token's scope does not allow this route",
        404: "unknown table or row",
        409: "a backup or restore of the table is running; retry later",
        413: f"body larger than {MAX_BODY_BYTES} bytes",
        415: "Content-Type is not application/json",
        422: "0 or more than 1000 rows, or an Idempotency-Key reused for another body",
        503: "the database is unavailable; retry later",
        507: "no space left for the backup",
    }
    return {
        s: ResponseSpec(
            data_container=Problem, description=descriptions[s], media_type=MediaType.JSON
        )
        for s in statuses
    }


@dataclass
class _RowsOperation(Operation):
    """Documents the raw body that post_rows reads without decoding it."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description=(
                "1 to 1000 row objects keyed by column name; every column is mandatory."
                " departments: department_id, department_name. jobs: job_id, job_name."
                " employees: employee_id, employee_name, hiring_date (ISO 8601 with a zone,"
                " e.g. 2021-07-27T16:02:08Z), department_id, job_id."
            ),
            content={
                JSON: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.ARRAY,
                        min_items=1,
                        max_items=1000,
                        items=Schema(type=OpenAPIType.OBJECT),
                    )
                )
            },
        )


# -- auth and checks ----------------------------------------------------------------------


async def require_token(connection: ASGIConnection, route: BaseRouteHandler) -> None:
    """Bearer token, compared in constant time against every configured token,
    and allowed the route's scope (opt["scope"]: read, ingest or admin).
    Async although it never awaits: Litestar runs a sync guard in a worker
    thread, a hop of its own on every request."""
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    tokens: tuple[tuple[bytes, ApiToken], ...] = connection.app.state.tokens
    offered = presented.strip().encode()
    found = [token for value, token in tokens if hmac.compare_digest(offered, value)]
    if scheme.lower() != "bearer" or not found:
        raise NotAuthorizedException(
            "send a valid API token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="dataarch"'},
        )
    scope = route.opt.get("scope", "admin")  # a route that forgot to say is admin-only
    if not found[0].allows(scope):
        raise PermissionDeniedException(
            f"this token's scope is {found[0].scope}; this route needs {scope}",
            headers={"WWW-Authenticate": f'Bearer realm="dataarch", scope="{scope}"'},
        )


def _known_table(table: str) -> str:
    """The table name, checked against the three tables before anything reaches SQL."""
    if table not in TABLES:
        raise NotFoundException(f"unknown table '{table}': use one of {', '.join(TABLES)}")
    return table


async def _fetch_json(
    request: Request, query: str | sql.Composable, params: tuple[object, ...] = ()
) -> bytes | None:
    """Run a query returning one jsonb value and hand back its text, undecoded."""
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    return row[0].encode() if row and row[0] is not None else None


# -- routes -------------------------------------------------------------------------------

TablePath = Annotated[str, PathParameter(description="departments, jobs or employees")]


@post(
    "/tables/{table:str}/rows",
    status_code=200,
    opt={"scope": "ingest"},
    operation_class=_RowsOperation,
    summary="Ingest 1-1000 rows into a table",
    description=(
        "Valid rows are inserted; every invalid row is logged in ingest_errors and returned"
        " with its reason. inserted + rejected = submitted. With mode=atomic all rows are"
        " inserted or none. Repeating a request with the same Idempotency-Key returns the"
        " first response and changes nothing."
    ),
    responses=_problems(400, 401, 403, 404, 413, 415, 422, 503),
)
async def post_rows(
    request: Request,
    table: TablePath,
    mode: Annotated[Literal["per_row", "atomic"], QueryParameter()] = "per_row",
    idempotency_key: Annotated[
        str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> Response[BatchSummary]:
    _known_table(table)
    if request.content_type[0] != JSON:
        raise HTTPException(
            status_code=415, detail=f"send the rows as {JSON}, not {request.content_type[0]!r}"
        )
    body = await request.body()  # bounded by request_max_body_size (413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationException(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    pool: AsyncConnectionPool = request.app.state.pool
    with timed() as took:
        async with pool.connection() as conn:
            cursor = await conn.execute(
                "select r::text, r ->> 'batch_id', r ->> 'submitted', r ->> 'inserted',"
                " r ->> 'rejected' from ingest_batch_json(%s, %s, %s, 'api', %s) as r",
                (table, text, mode, idempotency_key),
            )
            result, batch_id, submitted, inserted, rejected = await cursor.fetchone()
    event(
        log, "batch", source="api", table=table, mode=mode, batch_id=int(batch_id),
        submitted=int(submitted), inserted=int(inserted), rejected=int(rejected),
        idempotency_key=idempotency_key is not None, **took,
    )  # fmt: skip
    return Response(content=result.encode(), media_type=JSON)


CSV = "text/csv"
FormatQuery = Annotated[Literal["json", "csv"] | None, QueryParameter(name="format")]


@post(
    "/tables/{table:str}/csv",
    status_code=200,
    opt={"scope": "ingest"},
    request_max_body_size=None,  # the route checks DATAARCH_UPLOAD_MAX_BYTES itself
    summary="Load a CSV file into a table, as dataarch migrate does",
    description=(
        "The body is the file (text/csv, header-less unless it names the columns or"
        " header=true), streamed through the same reader, rules and error log as"
        " `dataarch migrate`, in one transaction. Every line is accounted for: the answer"
        " counts lines, records, blank lines, inserted and rejected rows by reason. A file"
        " whose content was loaded into the table before is not loaded again; the answer"
        " says so (status already_migrated)."
    ),
    responses=_problems(400, 401, 403, 404, 413, 415, 503),
)
async def post_csv(
    request: Request,
    table: TablePath,
    header: Annotated[bool, QueryParameter(description="skip the first line")] = False,
    delimiter: Annotated[str, QueryParameter(min_length=1, max_length=1)] = ",",
    encoding: Annotated[str, QueryParameter(max_length=40)] = "utf-8",
    file: Annotated[
        str, QueryParameter(min_length=1, max_length=200, description="the file's name, logged")
    ] = "upload.csv",
) -> Response[dict[str, Any]]:
    _known_table(table)
    settings: Settings = request.app.state.settings
    if request.content_type[0] != CSV:
        await _drain(request)
        raise HTTPException(status_code=415, detail=f"send the file as {CSV}")
    try:
        dialect = Dialect(delimiter=delimiter, encoding=encoding, header=header)
    except CsvError as exc:
        await _drain(request)
        raise ValidationException(str(exc)) from exc
    announced = request.content_length
    too_large = f"the file is over {settings.upload_max_bytes} bytes (DATAARCH_UPLOAD_MAX_BYTES)"
    if announced is not None and announced > settings.upload_max_bytes:
        await _drain(request)
        raise HTTPException(status_code=413, detail=too_large)
    body = _BodyChunks(request.stream(), settings.upload_max_bytes)

    def load() -> dict:
        with _api_connection(request) as conn:
            return migrate.load(
                conn, table, body, file, None, dialect,
                helper=(announced or 0) >= migrate.TWO_SESSIONS_FROM,
            )  # fmt: skip

    with timed() as took:
        try:
            summary = await anyio.to_thread.run_sync(load)
        except migrate.MigrationError as exc:
            raise ValidationException(str(exc)) from exc
        except _TooLarge:
            await _drain(request, body.stream)
            raise HTTPException(status_code=413, detail=too_large) from None
    event(log, "upload", table=table, file=file, status=summary["status"],
          batch_id=summary.get("batch_id"), inserted=summary.get("inserted"),
          rejected=summary.get("rejected"), **took)  # fmt: skip
    return Response(content=summary, media_type=JSON)


class _BodyChunks:
    """A request body as an iterator of bytes for the loader's worker thread,
    pulled from the event loop a chunk at a time: never held whole. Past the
    limit it raises _TooLarge, which rolls the load back."""

    def __init__(self, stream: AsyncIterator[bytes], limit: int) -> None:
        self.stream, self.limit, self.seen = stream, limit, 0

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(self._next)) is not None:
            self.seen += len(chunk)
            if self.seen > self.limit:
                raise _TooLarge
            yield chunk

    async def _next(self) -> bytes | None:
        return await anext(self.stream, None)


class _TooLarge(Exception):
    """The body passed the limit: raised inside the loader to roll it back."""


async def _drain(request: Request, started: AsyncIterator[bytes] | None = None) -> None:
    """Read what the client sends, so it sees the answer instead of a reset;
    a body already being read is read on from where it is (a second stream
    would wait for a message that never comes)."""
    async for _ in started or request.stream():
        pass


@get(
    "/tables/{table:str}/rows/{row_id:str}",
    opt={"scope": "read"},
    summary="One row by id",
    responses=_problems(400, 401, 403, 404, 503),
)
async def get_row(
    request: Request,
    table: TablePath,
    row_id: Annotated[str, PathParameter(description="an integer from 1 to 2147483647")],
) -> Response[dict[str, Any]]:
    _known_table(table)
    if not (row_id.isascii() and row_id.isdigit() and 1 <= int(row_id) <= 2**31 - 1):
        raise ValidationException(f"{ID_COLUMNS[table]} must be an integer from 1 to 2147483647")
    row = await _fetch_json(request, "select table_row(%s, %s)::text", (table, int(row_id)))
    if row is None:
        raise NotFoundException(f"no row in {table} with {ID_COLUMNS[table]} = {row_id}")
    return Response(content=row, media_type=JSON)


StatusQuery = Annotated[
    Literal["open", "resolved", "closed"] | None,
    QueryParameter(
        description="open until a later batch inserts the id (resolved) or it is closed"
    ),
]
ReasonQuery = Annotated[str | None, QueryParameter(max_length=40)]
SinceQuery = Annotated[datetime | None, QueryParameter(description="received at or after")]


@get(
    "/tables/{table:str}/rejections",
    opt={"scope": "read"},
    summary="Logged rejections of a table, newest first; format=csv gives the reject file",
    description=(
        "JSON: a page of rejections with their status. format=csv: every matching rejected"
        " row, oldest first, as the header-less CSV that `dataarch rejections export` writes,"
        " to edit and send again (rows that cannot be written as the table's columns are"
        " left out; the JSON listing has them)."
    ),
    responses=_problems(400, 401, 403, 404, 503),
)
async def get_rejections(
    request: Request,
    table: TablePath,
    batch_id: Annotated[int | None, QueryParameter(ge=1, le=2**63 - 1)] = None,
    status: StatusQuery = None,
    reason: ReasonQuery = None,
    since: SinceQuery = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    fmt: FormatQuery = None,
) -> Response[RejectionPage]:
    _known_table(table)
    if fmt == "csv":
        pool: AsyncConnectionPool = request.app.state.pool
        async with pool.connection() as conn:
            columns = (await (await conn.execute(
                "select _table_columns(%s)", (table,))).fetchone())[0]  # fmt: skip
            cursor = await conn.execute(
                "select batch_id, source, place, raw_line, raw_row, reason_code, field, message"
                " from rejected_records(%s, %s, %s, %s, %s)",
                (table, batch_id, status, reason, since),
            )
            rows = [Rejected(*row) for row in await cursor.fetchall()]
        records, _, _ = reject_files(rows, columns)
        return Response(content=records, media_type=CSV)
    page = await _fetch_json(
        request,
        "select table_rejections(%s, %s, %s, %s, %s, %s, %s)::text",
        (table, batch_id, status, reason, since, limit, offset),
    )
    return Response(content=page or b"", media_type=JSON)


ErrorId = Annotated[int, Meta(ge=1, le=2**63 - 1)]


@dataclass
class CloseRequest:
    ids: Annotated[list[ErrorId], Meta(min_length=1, max_length=10_000)]
    """error_id of each rejection to close"""
    note: Annotated[str, Meta(min_length=1, max_length=2000)]
    """why: what was done about them"""
    by: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    """who closes them (default: the API's database role)"""


@post(
    "/rejections/close",
    status_code=200,
    opt={"scope": "admin"},
    summary="Close open rejections by hand, with a note",
    description="For a rejection no later row will resolve (one without a usable id, say)."
    " Answers which were closed, which were not open and which are unknown.",
    responses=_problems(400, 401, 403, 503),
)
async def post_close_rejections(
    request: Request, data: JSONBody[CloseRequest]
) -> Response[dict[str, Any]]:
    closed = await _fetch_json(
        request, "select close_rejections(%s, %s, %s)::text", (data.ids, data.note, data.by)
    )
    event(log, "rejections closed", result=json.loads(closed or b"{}"))
    return Response(content=closed or b"", media_type=JSON)


@dataclass
class RestoreRequest:
    file: str | None = None
    """A backup's file name as GET /tables/{table}/backups lists it; default: the newest."""
    dry_run: bool = False
    """Say what the restore would change, and change nothing."""


@dataclass
class BackupMade:
    set: str
    files: list[BackupInfo]
    pruned: list[str]


def _api_connection(request: Request) -> psycopg.Connection:
    settings: Settings = request.app.state.settings
    return psycopg.connect(db.api_conninfo(settings), options=db.SESSION_OPTIONS, connect_timeout=3)


def _backup(request: Request, tables: list[str] | None, codec: str, keep: int | None,
            keep_days: float | None) -> BackupMade:  # fmt: skip
    settings: Settings = request.app.state.settings
    with _api_connection(request) as conn:
        made = backup_tables(conn, tables, settings.backup_dir, codec, keep, keep_days)
    event(log, "backup", set=made.name, tables=[f.table for f in made.files],
          pruned=[p.name for p in made.pruned])  # fmt: skip
    return BackupMade(made.name, made.files, [p.name for p in made.pruned])


CodecQuery = Annotated[Literal["deflate", "snappy", "null"], QueryParameter()]
KeepQuery = Annotated[
    int | None, QueryParameter(ge=1, le=100_000, description="keep the newest N of each table")
]
KeepDaysQuery = Annotated[
    float | None, QueryParameter(gt=0, le=100_000, description="delete those older than N days")
]


@post(
    "/tables/{table:str}/backups",
    status_code=201,
    sync_to_thread=True,
    opt={"scope": "admin"},
    summary="Write an Avro backup of a table (a set of one file)",
    description="Retention (keep, keep_days) goes by the time in each file's header and"
    " never removes the file just written; `pruned` names what it removed.",
    responses=_problems(400, 401, 403, 404, 503, 507),
)
def post_backup(
    request: Request,
    table: TablePath,
    codec: CodecQuery = "deflate",
    keep: KeepQuery = None,
    keep_days: KeepDaysQuery = None,
) -> BackupMade:
    return _backup(request, [_known_table(table)], codec, keep, keep_days)


@post(
    "/backups",
    status_code=201,
    sync_to_thread=True,
    opt={"scope": "admin"},
    summary="Write a full backup set: every table and the ingest log, from one snapshot",
    responses=_problems(400, 401, 403, 503, 507),
)
def post_backup_set(
    request: Request,
    codec: CodecQuery = "deflate",
    keep: KeepQuery = None,
    keep_days: KeepDaysQuery = None,
) -> BackupMade:
    return _backup(request, None, codec, keep, keep_days)


@get(
    "/tables/{table:str}/backups",
    sync_to_thread=True,
    opt={"scope": "admin"},
    summary="The backups of a table, oldest first; an unreadable file says why in `problem`",
    responses=_problems(401, 403, 404),
)
def get_backups(request: Request, table: TablePath) -> list[BackupInfo]:
    return list_backups(request.app.state.settings.backup_dir, _known_table(table))


@post(
    "/tables/{table:str}/restore",
    status_code=200,
    sync_to_thread=True,
    opt={"scope": "admin"},
    summary="Replace a table's rows with a backup (default: the newest)",
    description=(
        "One transaction: the table is locked, emptied, loaded and checked (constraints,"
        " references, row count and checksum) before commit; on any problem it is unchanged."
        " Only a state a backup of this database recorded is accepted. The answer says how"
        " many rows were added, removed and changed; with dry_run nothing changes."
    ),
    responses=_problems(400, 401, 403, 404, 409, 422, 503),
)
def post_restore(
    request: Request,
    table: TablePath,
    data: JSONBody[RestoreRequest | None] = None,
    dry_run: Annotated[bool, QueryParameter()] = False,
) -> RestoreResult:
    _known_table(table)
    settings: Settings = request.app.state.settings
    files = {p.name: p for p in backup_files(settings.backup_dir, table)}
    if data and data.file:
        wanted = data.file
    else:
        newest = store_newest(settings.backup_dir, table)
        wanted = newest.file if newest else None
    if wanted is None or wanted not in files:
        raise NotFoundException(f"no backup of {table} named {wanted}" if wanted else
                                f"{table} has no backup yet")  # fmt: skip
    with _api_connection(request) as conn:
        done = restore_table(
            conn, table, files[wanted], dry_run=dry_run or bool(data and data.dry_run),
            catalogued_only=True, lock_timeout=settings.lock_timeout,
        )  # fmt: skip
    if not done.dry_run:
        event(log, "restore", table=table, file=wanted, rows=done.rows, added=done.added,
              removed=done.removed, changed=done.changed)  # fmt: skip
    return done


# KPI name -> (SQL function, output columns as the CSV header names them)
KPIS = {
    "hires-by-quarter": (
        "kpi_hires_by_quarter",
        ("department", "job", "Q1", "Q2", "Q3", "Q4"),
    ),
    "departments-above-mean": ("kpi_departments_above_mean", ("id", "department", "hired")),
}
KPI_DESCRIPTIONS = {
    "hires-by-quarter": (
        "Hires per department and job in each UTC quarter of the year, for pairs with at least"
        " one hire, ordered byte-wise by department then job."
    ),
    "departments-above-mean": (
        "Departments that hired more than the mean number of hires per department in the year."
        " The mean is taken over ALL departments, including those that hired nobody."
        " Ordered by hires descending, ties by id."
    ),
}
YearQuery = Annotated[int, QueryParameter(ge=1, le=9999, description="e.g. 2021")]


def _kpi_sql(name: str, year: int, output: str) -> sql.Composed:
    """The KPI function's rows, in its order, as CSV (COPY) or as a JSON array."""
    function, columns = KPIS[name]
    source = sql.SQL("{}({}) with ordinality as k ({}, n)").format(
        sql.Identifier(function),
        sql.Literal(year),  # an int the route checked: safe to inline, as COPY needs
        sql.SQL(", ").join(sql.Identifier(c.lower()) for c in columns),
    )
    if output == "csv":
        fields = sql.SQL(", ").join(
            sql.SQL("{} as {}").format(sql.Identifier(c.lower()), sql.Identifier(c))
            for c in columns
        )
        return sql.SQL("copy (select {} from {} order by n) to stdout with (format csv, header)"
                       ).format(fields, source)  # fmt: skip
    pairs = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(c), sql.Identifier(c.lower())) for c in columns
    )
    return sql.SQL(
        "select coalesce(json_agg(json_build_object({}) order by n), '[]')::text from {}"
    ).format(pairs, source)


async def _kpi_response(request: Request, name: str, year: int, fmt: str | None) -> Response:
    wants_csv = fmt == "csv" or (fmt is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        return Response(content=await _fetch_json(request, _kpi_sql(name, year, "json")),
                        media_type=JSON)  # fmt: skip
    pool: AsyncConnectionPool = request.app.state.pool
    async with pool.connection() as conn, conn.cursor().copy(_kpi_sql(name, year, "csv")) as copy:
        body = b"".join([bytes(chunk) async for chunk in copy])
    return Response(content=body, media_type="text/csv")


@get(
    "/kpis/hires-by-quarter",
    opt={"scope": "read"},
    summary="KPI 1: hires by quarter (JSON, or CSV with Accept: text/csv or ?format=csv)",
    description=KPI_DESCRIPTIONS["hires-by-quarter"],
    responses=_problems(400, 401, 403, 503),
)
async def kpi_hires_by_quarter(
    request: Request, year: YearQuery = 2021, fmt: FormatQuery = None
) -> Response[list[dict[str, Any]]]:
    return await _kpi_response(request, "hires-by-quarter", year, fmt)


@get(
    "/kpis/departments-above-mean",
    opt={"scope": "read"},
    summary="KPI 2: departments hiring above the mean (JSON, or CSV)",
    description=KPI_DESCRIPTIONS["departments-above-mean"],
    responses=_problems(400, 401, 403, 503),
)
async def kpi_departments_above_mean(
    request: Request, year: YearQuery = 2021, fmt: FormatQuery = None
) -> Response[list[dict[str, Any]]]:
    return await _kpi_response(request, "departments-above-mean", year, fmt)


def _report(request: Request, name: str, year: int) -> Response[str]:
    with _api_connection(request) as conn:
        data = load_data(conn, year)
    html = render_page(name, data, link_suffix=f"?year={year}")
    return Response(content=html, media_type=MediaType.HTML)


@get(
    ["/reports", "/reports/"],
    opt={"scope": "read"},
    sync_to_thread=True,
    summary="The reports' index page (self-contained HTML)",
    responses=_problems(400, 401, 403, 503),
)
def report_index(request: Request, year: YearQuery = 2021) -> Response[str]:
    return _report(request, "index", year)


@get(
    "/reports/{page:str}",
    opt={"scope": "read"},
    sync_to_thread=True,
    summary="A KPI report: hires-by-quarter.html or departments-above-mean.html",
    responses=_problems(400, 401, 403, 404, 503),
)
def report_page(
    request: Request,
    page: Annotated[str, PathParameter(description="hires-by-quarter.html, ...")],
    year: YearQuery = 2021,
) -> Response[str]:
    name = page.removesuffix(".html")
    if not page.endswith(".html") or name not in PAGES:
        raise NotFoundException(f"no report named {page!r}: see /reports/")
    return _report(request, name, year)


@get("/health", summary="Whether the database answers (no auth)", responses=_problems(503))
async def health(request: Request) -> Response[Health]:
    """503 "degraded" when no connection frees up within a second (every one
    waits on something, such as a table a restore holds), 503 "unavailable"
    when the database does not answer at all."""
    pool: AsyncConnectionPool = request.app.state.pool
    try:
        async with pool.connection(timeout=1) as conn:
            await conn.execute("select 1")
    except PoolTimeout:
        return Response(Health("degraded", "busy"), status_code=503, headers=RETRY_SOON)
    except psycopg.Error:
        return Response(Health("unavailable", "down"), status_code=503, headers=RETRY_SOON)
    return Response(Health("ok", "up"))


# -- errors -------------------------------------------------------------------------------


def _database_problem(exc: psycopg.Error) -> ProblemDetailsException:
    """The error catalogue (dataarch/errors.py) says the status, the title and
    whether to retry. A 4xx says what the database said; a 5xx says only the
    title (details can quote row contents) and is logged, with the SQLSTATE
    and the database's message, and its traceback when it is a surprise."""
    entry = errors.sqlstate(exc.sqlstate)
    if entry.status >= 500:
        fields = {"sqlstate": exc.sqlstate, "message": exc.diag.message_primary,
                  "status": entry.status}  # fmt: skip
        log.error("database error", exc_info=exc if entry.status == 500 else None,
                  extra={"fields": fields})  # fmt: skip
        detail = f"{entry.title}; " + ("retry later" if entry.retry else "it has been logged")
        extra = {}
    else:
        detail = exc.diag.message_primary or str(exc)
        extra = {"sqlstate": exc.sqlstate}
        if exc.diag.message_hint:
            extra["hint"] = exc.diag.message_hint
    return ProblemDetailsException(
        status_code=entry.status, title=entry.title, detail=detail, extra=extra or None,
        headers=RETRY_SOON if entry.retry else None,
    )  # fmt: skip


def _http_problem(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors (401, 404, 413, validation ...): the phrase as the title,
    our message as the detail, validation findings as `errors`."""
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != phrase else ""
    errors = {"errors": exc.extra} if exc.extra else None
    return ProblemDetailsException(
        status_code=exc.status_code,
        title=phrase,
        detail=detail,
        headers=exc.headers,
        extra=errors,
    )


def _backup_problem(exc: BackupError) -> ProblemDetailsException:
    """409 while a backup or restore holds the table, 507 or 503 when the
    backup directory cannot be written (the cause goes to the log: the
    answer names no server path), else 422 with the reason."""
    if isinstance(exc, StorageError):
        status = 507 if exc.no_space else 503
        log.error("backup storage", extra={"fields": {"message": str(exc), "status": status}})
        detail = f"the server cannot write its backup directory: {exc.reason}"
    else:
        status = 409 if isinstance(exc, BusyError) else 422
        detail = str(exc)
    return ProblemDetailsException(
        status_code=status, title=HTTPStatus(status).phrase, detail=detail
    )


def _pool_problem(_: PoolTimeout) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=503, title=HTTPStatus(503).phrase, detail="the database is unavailable",
        headers=RETRY_SOON,
    )  # fmt: skip


def _unexpected_problem(exc: Exception) -> ProblemDetailsException:
    log.error("unhandled error", exc_info=exc)
    return ProblemDetailsException(
        status_code=500, title=HTTPStatus(500).phrase, detail="unexpected error; it is logged"
    )


# -- the application ----------------------------------------------------------------------


async def _check_if_suspect(conn: psycopg.AsyncConnection) -> None:
    """The pool's check of a connection it hands out, without a round trip
    each time (0.37 ms of a 1000-row POST). An idle connection has nothing to
    read unless the server closed it or sent it an error (a restart, a
    terminated backend): only then is the full check, an empty query, run."""
    waiting = select.poll()  # poll, not select: a busy server's fds pass 1024
    waiting.register(conn.fileno(), select.POLLIN)
    if waiting.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the app; the database pool opens in the lifespan, never at import time."""
    settings = settings or Settings.from_env()
    if not settings.tokens:
        raise RuntimeError("no API token: set DATAARCH_API_TOKEN or DATAARCH_API_TOKEN_FILE")

    lock_ms = int(settings.lock_timeout * 1000)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            db.api_conninfo(settings),
            kwargs={
                # a request waits at most lock_timeout for a table a restore holds (503)
                "options": f"{db.SESSION_OPTIONS} -c lock_timeout={lock_ms}",
                "connect_timeout": 3,
                "autocommit": True,
            },
            min_size=2,
            max_size=10,
            timeout=3,  # a request waits this long for the database, then gets 503
            check=_check_if_suspect,  # drop connections a restart broke
            open=False,
        )
        await pool.open(wait=False)  # start even while the database is down
        app.state.pool = pool
        app.state.settings = settings
        app.state.tokens = tuple((t.value.encode(), t) for t in settings.tokens)
        try:
            yield
        finally:
            await pool.close()

    protected = Router(
        path="/",
        route_handlers=[
            post_rows,
            post_csv,
            get_row,
            get_rejections,
            post_close_rejections,
            post_backup,
            post_backup_set,
            get_backups,
            post_restore,
            kpi_hires_by_quarter,
            kpi_departments_above_mean,
            report_index,
            report_page,
        ],
        guards=[require_token],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[protected, health],
        lifespan=[lifespan],
        logging_config=None,  # the program that runs the app configures logging (dataarch.logs)
        request_max_body_size=MAX_BODY_BYTES,
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    exception_to_problem_detail_map={
                        HTTPException: _http_problem,
                        psycopg.Error: _database_problem,
                        PoolTimeout: _pool_problem,
                        BackupError: _backup_problem,
                        Exception: _unexpected_problem,
                    },
                )
            )
        ],
        openapi_config=OpenAPIConfig(
            title="dataarch",
            version="1.0.0",
            description=(
                "Validated ingestion into the HR database (departments, jobs, employees)."
                " Errors are RFC 9457 problem documents."
            ),
            components=Components(
                security_schemes={"bearer": {"type": "http", "scheme": "bearer"}}  # type: ignore[dict-item]
            ),
        ),
    )
