"""/batches: what each load did, and undoing one (revert). The database
says everything (procedures/090_lineage.sql); these routes pass its JSON
through. Looking is the view scope's (the data-quality report links each
batch to its page; no row's content is shown), undoing the admin's."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Literal

from litestar import Controller, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter, QueryParameter

from api.problems import problem_responses
from api.schemas import JSON, BatchPage, Reverted, RevertPlan
from api.state import DataTables, Pool
from api.tables import fetch_json, known_table
from dataarch.logs import event

log = logging.getLogger("dataarch.api")
BatchId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="the batch's id")]
Kind = Literal["api", "psql", "csv", "retry", "restore", "revert"]


class BatchesController(Controller):
    path = "/batches"
    tags = ["batches"]

    @get(
        opt={"scope": "view"}, operation_id="listBatches",
        summary="Batches newest first, with their counts, source and whether reverted",
        responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    async def list_batches(
        self,
        tables: DataTables,
        pool: Pool,
        table: Annotated[
            str | None,
            QueryParameter(description="one table's (GET /dictionary)"),
        ] = None,
        kind: Annotated[Kind | None, QueryParameter(description="how it arrived")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    ) -> Response[BatchPage]:
        if table is not None:
            known_table(tables, table)
        page = await fetch_json(
            pool, "select batches(%s, %s, %s, %s)::text", (table, kind, limit, offset)
        )
        return Response(content=page or b"", media_type=JSON)

    @get(
        "/{batch_id:int}", opt={"scope": "view"}, operation_id="getBatch",
        summary="One batch, how many of its rows are still there, and its rejections",
        responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    async def get_batch(self, pool: Pool, batch_id: BatchId) -> Response[dict]:
        found = await fetch_json(pool, "select batch_detail(%s)::text", (batch_id,))
        if found is None:
            raise NotFoundException(f"no batch {batch_id}")
        return Response(content=found, media_type=JSON)

    @post(
        "/{batch_id:int}/revert", status_code=200, opt={"scope": "admin"},
        operation_id="revertBatch",
        summary="Take out exactly the rows a batch inserted, as a batch of its own",
        description=(
            "One transaction. Refused (409) when rows of other batches reference its rows,"
            " naming them, unless cascade=true (they are reverted first); refused for a"
            " revert or a restore. The rejections it resolved open again, its file may load"
            " again, hire counts and KPIs follow. dry_run=true says what it would take out"
            " and changes nothing."
        ),
        responses=problem_responses(400, 401, 403, 404, 406, 409, 503),
    )  # fmt: skip
    async def revert(
        self,
        pool: Pool,
        batch_id: BatchId,
        cascade: Annotated[bool, QueryParameter(description="revert its dependants too")] = False,
        dry_run: Annotated[bool, QueryParameter(description="change nothing")] = False,
    ) -> Response[Reverted | RevertPlan]:
        function = "revert_plan" if dry_run else "revert_batch"
        done = await fetch_json(
            pool, f"select {function}(%s, %s)::text", (batch_id, cascade)
        )  # fmt: skip
        if not dry_run:
            event(log, "revert", batch_id=batch_id, cascade=cascade,
                  reverted=json.loads(done or b"{}").get("reverted"))  # fmt: skip
        return Response(content=done or b"", media_type=JSON)
