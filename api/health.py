"""Operations: liveness and readiness without a token (probes have none),
and the metrics behind a token of read scope.

/health/live   the process answers
/health/ready  the database answers and can ingest: ready_to_ingest()
               runs the validation core on a sample row (PL/pgSQL, the
               field rules, the session's temporary tables), so a server
               that cannot run them (say, a library the upgrade broke)
               is not ready; 503 "degraded" when no connection frees up
               within a second
/health        the same as /health/ready, kept for older probes
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import psycopg
from litestar import Controller, Response, get
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest
from psycopg_pool import PoolTimeout

from api.problems import RETRY_SOON, problem_responses
from api.state import AppMetrics, Pool
from dataarch import errors

log = logging.getLogger("dataarch.api")
TEXT_FORMAT = "text/plain; version=0.0.4"  # Prometheus's text format

Status = Literal["ok", "degraded", "unavailable"]


@dataclass
class Health:
    status: Status
    database: Literal["up", "busy", "down", "not checked"]
    reason: str | None = None


class HealthController(Controller):
    path = "/health"
    tags = ["operations"]
    opt = {"public": True}

    @get("/live", operation_id="getLiveness", summary="The process is up")
    async def live(self) -> Health:
        return Health("ok", "not checked")

    @get(
        "/ready",
        operation_id="getReadiness",
        summary="The database answers and can run the ingest core (503 with a reason if not)",
    )
    async def ready(self, pool: Pool) -> Response[Health]:
        return await readiness(pool)

    @get(operation_id="getHealth", summary="The same as /health/ready, for older probes")
    async def health(self, pool: Pool) -> Response[Health]:
        return await readiness(pool)


async def readiness(pool: Pool) -> Response[Health]:
    try:
        async with pool.connection(timeout=1) as conn:
            await conn.execute("select ready_to_ingest()")
    except PoolTimeout:
        return Response(Health("degraded", "busy", "no database connection came free"),
                        status_code=503, headers=RETRY_SOON)  # fmt: skip
    except psycopg.Error as exc:  # the title only: a message can name server paths
        message = exc.diag.message_primary or str(exc)
        log.error("not ready", extra={"fields": {"sqlstate": exc.sqlstate, "message": message}})
        return Response(Health("unavailable", "down", errors.of_error(exc).title),
                        status_code=503, headers=RETRY_SOON)  # fmt: skip
    return Response(Health("ok", "up"))


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]
    opt = {"scope": "read", "produces": [CONTENT_TYPE_LATEST.split(";")[0]]}

    @get(operation_id="getMetrics", summary="Counters and histograms in Prometheus text format",
         responses=problem_responses(401, 403, 406))  # fmt: skip
    async def metrics(self, metrics: AppMetrics, pool: Pool) -> Response[str]:
        stats = pool.get_stats()
        metrics.pool_size.set(stats.get("pool_size", 0))
        metrics.pool_waiting.set(stats.get("requests_waiting", 0))
        await metrics.read_database(pool)
        # CONTENT_TYPE_LATEST names a charset, and Litestar adds one: say it once
        return Response(generate_latest(metrics.registry), media_type=TEXT_FORMAT)
