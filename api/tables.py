"""/tables/{table}: rows in (JSON batches, CSV files) and one row out."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any, Literal

import anyio
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.params import HeaderParameter, PathParameter, QueryParameter

from api.problems import problem_responses
from api.schemas import (
    CSV,
    JSON,
    BatchSummary,
    CsvBodyOperation,
    CsvSummary,
    Lineage,
    RowsOperation,
    TablePath,
)
from api.state import (
    AppMetrics,
    AppServices,
    AppSettings,
    BlockingPool,
    DataTables,
    Pool,
    dictionary_of,
)
from dataarch import migrate
from dataarch.csvrecords import CsvError, Dialect
from dataarch.dictionary import Dictionary, Table
from dataarch.logs import event, request_id, timed

log = logging.getLogger("dataarch.api")
# 1000 rows whose 200-character names are all \\uXXXX escapes, with room to spare.
MAX_BODY_BYTES = 2 * 1024 * 1024


def known_table(tables: Dictionary, table: str) -> str:
    """The table name, checked against the data dictionary before anything
    reaches SQL or names a backup folder."""
    if table not in tables:
        raise NotFoundException(tables.unknown(table))
    return table


async def fetch_json(pool: Pool, query: Any, params: tuple = ()) -> bytes | None:
    """Run a query returning one jsonb value and hand back its text, undecoded."""
    async with pool.connection() as conn:
        cursor = await conn.execute(query, params)
        row = await cursor.fetchone()
    return row[0].encode() if row and row[0] is not None else None


class DictionaryController(Controller):
    path = "/dictionary"
    tags = ["rows"]

    @get(
        opt={"scope": "read"}, operation_id="getDataDictionary",
        summary="The tables in load order, their CSV file names, and their columns in CSV order",
        description=(
            "data_dictionary() of the database: each column's field rule, SQL type, the table"
            " it references and the named constraints that hold it. The client reads a"
            " table's columns here."
        ),
        responses=problem_responses(401, 403, 406, 503),
    )  # fmt: skip
    async def dictionary(self, pool: Pool) -> Response[list[dict[str, Any]]]:
        found = await fetch_json(pool, "select data_dictionary()::text")
        return Response(content=found or b"[]", media_type=JSON)


class TablesController(Controller):
    path = "/tables/{table:str}"
    tags = ["rows"]

    @post(
        "/rows", status_code=200, opt={"scope": "ingest"}, operation_id="ingestRows",
        operation_class=RowsOperation, request_max_body_size=MAX_BODY_BYTES,
        summary="Ingest 1-1000 rows into a table",
        description=(
            "Valid rows are inserted; every invalid row is logged in ingest_errors and returned"
            " with its reason. inserted + rejected = submitted. With mode=atomic all rows are"
            " inserted or none. Repeating a request with the same Idempotency-Key within 24"
            " hours returns the first response (replayed: true) and changes nothing."
        ),
        responses=problem_responses(400, 401, 403, 404, 406, 413, 415, 422, 503),
    )  # fmt: skip
    async def ingest_rows(
        self,
        # One dependency, not pool, tables and metrics apart: Litestar resolves
        # several of one level in a task group a request, which cost 0.22 of the
        # server's 2.0 ms of CPU a 1000-row POST (its /proc CPU time over 300).
        services: AppServices,
        request: Request,
        table: TablePath,
        mode: Annotated[Literal["per_row", "atomic"], QueryParameter()] = "per_row",
        idempotency_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", min_length=1, max_length=200)
        ] = None,
    ) -> Response[BatchSummary]:
        known_table(await dictionary_of(services), table)
        if request.content_type[0] != JSON:
            raise HTTPException(
                status_code=415, detail=f"send the rows as {JSON}, not {request.content_type[0]!r}"
            )
        body = await request.body()  # bounded by request_max_body_size (413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationException(
                f"body is not UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
        with timed() as took:
            async with services.pool.connection() as conn:
                cursor = await conn.execute(
                    "select r::text, r ->> 'batch_id', r ->> 'submitted', r ->> 'inserted',"
                    " r ->> 'rejected' from ingest_batch_json(%s, %s, %s, 'api', %s, %s) as r",
                    (table, text, mode, idempotency_key, request_id.get()),
                )
                result, batch_id, submitted, inserted, rejected = await cursor.fetchone()
        services.metrics.batch(table, int(inserted), int(rejected), took["duration_ms"] / 1000)
        event(
            log, "batch", source="api", table=table, mode=mode, batch_id=int(batch_id),
            submitted=int(submitted), inserted=int(inserted), rejected=int(rejected),
            idempotency_key=idempotency_key is not None, **took,
        )  # fmt: skip
        return Response(content=result.encode(), media_type=JSON)

    @post(
        "/csv", status_code=200, opt={"scope": "ingest"}, operation_id="uploadCsv",
        operation_class=CsvBodyOperation,
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
        responses=problem_responses(400, 401, 403, 404, 406, 408, 413, 415, 422, 503),
    )  # fmt: skip
    async def upload_csv(
        self,
        tables: DataTables,
        request: Request,
        table: TablePath,
        settings: AppSettings,
        blocking: BlockingPool,
        metrics: AppMetrics,
        header: Annotated[bool, QueryParameter(description="skip the first line")] = False,
        delimiter: Annotated[str, QueryParameter(min_length=1, max_length=1)] = ",",
        encoding: Annotated[str, QueryParameter(max_length=40)] = "utf-8",
        file: Annotated[
            str, QueryParameter(min_length=1, max_length=200, description="its name, logged")
        ] = "upload.csv",
        force: Annotated[
            bool,
            QueryParameter(description="load it even when its name or header names another table"),
        ] = False,
    ) -> Response[CsvSummary]:
        known_table(tables, table)
        if request.content_type[0] != CSV:
            await _drain(request)
            raise HTTPException(status_code=415, detail=f"send the file as {CSV}")
        try:
            dialect = Dialect(delimiter=delimiter, encoding=encoding, header=header)
            if not force:
                migrate.refuse_a_file_named_for_another_table(tables, table, file)
        except CsvError as exc:
            await _drain(request)
            raise ValidationException(str(exc)) from exc
        except migrate.MigrationError as exc:
            await _drain(request)
            raise refused(exc) from exc
        announced = request.content_length
        limit = settings.upload_max_bytes
        too_large = f"the file is over {limit} bytes (DATAARCH_UPLOAD_MAX_BYTES)"
        if announced is not None and announced > limit:
            await _drain(request)
            raise HTTPException(status_code=413, detail=too_large)
        body = _BodyChunks(request.stream(), limit, settings.upload_idle_timeout)

        def load() -> dict:
            with blocking.connection() as conn:
                return migrate.load(
                    conn, table, body, file, None, dialect,
                    sessions=settings.migrate_sessions, size=announced, force=force,
                )  # fmt: skip

        started = time.perf_counter()
        try:
            summary = await anyio.to_thread.run_sync(load)
        except migrate.MigrationError as exc:
            await _drain(request, body.stream)
            raise refused(exc) from exc
        except _TooLarge:
            await _drain(request, body.stream)
            raise HTTPException(status_code=413, detail=too_large) from None
        except _Stalled:
            raise HTTPException(
                status_code=408, headers={"Connection": "close"},
                detail=f"the body sent nothing for {settings.upload_idle_timeout:g} s"
                " (DATAARCH_UPLOAD_IDLE_TIMEOUT): nothing was loaded",
            ) from None  # fmt: skip
        seconds = time.perf_counter() - started
        if summary["status"] == "migrated":
            metrics.batch(table, summary["inserted"], summary["rejected"], seconds)
        event(log, "upload", table=table, file=file, status=summary["status"],
              batch_id=summary.get("batch_id"), inserted=summary.get("inserted"),
              rejected=summary.get("rejected"), duration_ms=round(seconds * 1000, 2))  # fmt: skip
        return Response(content=summary, media_type=JSON)

    @get(
        "/rows/{row_id:str}", opt={"scope": "read"}, operation_id="getRow",
        summary="One row by id", responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    async def get_row(
        self,
        tables: DataTables,
        table: TablePath,
        pool: Pool,
        row_id: Annotated[str, PathParameter(description="an integer from 1 to 2147483647")],
    ) -> Response[dict[str, Any]]:  # a row (api/openapi.describe_tables)
        known_table(tables, table)
        row = await fetch_json(
            pool, "select table_row(%s, %s)::text", (table, row_number(tables[table], row_id))
        )
        if row is None:
            raise NotFoundException(f"no row in {table} with {tables[table].id_column} = {row_id}")
        return Response(content=row, media_type=JSON)


def refused(exc: migrate.MigrationError) -> HTTPException:
    """422: the file was read and refused whole (not a CSV of the table, or
    one of another table); nothing of it was loaded."""
    return HTTPException(status_code=422, detail=str(exc))


class LineageController(Controller):
    path = "/tables/{table:str}/rows/{row_id:str}/lineage"
    tags = ["rows"]

    @get(
        opt={"scope": "read"}, operation_id="getRowLineage",
        summary="Where a row came from: its batch, file and line, and the rejections before it",
        responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    async def lineage(
        self,
        tables: DataTables,
        table: TablePath,
        pool: Pool,
        row_id: Annotated[str, PathParameter(description="an integer from 1 to 2147483647")],
    ) -> Response[Lineage]:
        known_table(tables, table)
        found = await fetch_json(
            pool, "select row_lineage(%s, %s)::text", (table, row_number(tables[table], row_id))
        )
        if found is None:
            raise NotFoundException(f"no row in {table} with {tables[table].id_column} = {row_id}")
        return Response(content=found, media_type=JSON)


def row_number(table: Table, row_id: str) -> int:
    """A row id from the path, or 400 saying what one is."""
    if not (row_id.isascii() and row_id.isdigit() and 1 <= int(row_id) <= 2**31 - 1):
        raise ValidationException(f"{table.id_column} must be an integer from 1 to 2147483647")
    return int(row_id)


class _BodyChunks:
    """A request body as an iterator of bytes for the loader's worker thread,
    pulled from the event loop a chunk at a time: never held whole. Past the
    limit it raises _TooLarge, and when no byte arrives for `idle` seconds
    _Stalled (a client that went silent would hold the table's load lock
    for ever); either rolls the load back."""

    def __init__(self, stream: AsyncIterator[bytes], limit: int, idle: float) -> None:
        self.stream, self.limit, self.idle, self.seen = stream, limit, idle, 0

    def __iter__(self) -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(self._next)) is not None:
            self.seen += len(chunk)
            if self.seen > self.limit:
                raise _TooLarge
            yield chunk

    async def _next(self) -> bytes | None:
        try:
            with anyio.fail_after(self.idle):
                return await anext(self.stream, None)
        except TimeoutError:
            raise _Stalled from None


class _TooLarge(Exception):
    """The body passed the limit: raised inside the loader to roll it back."""


class _Stalled(Exception):
    """The body sent nothing for too long: raised inside the loader to roll it back."""


async def _drain(request: Request, started: AsyncIterator[bytes] | None = None) -> None:
    """Read what the client sends, so it sees the answer instead of a reset;
    a body already being read is read on from where it is (a second stream
    would wait for a message that never comes)."""
    async for _ in started or request.stream():
        pass
