"""The HTTP service, composed: a thin Litestar app in front of the database.

Request bodies go to the database as the bytes that arrived and its JSON
comes back as it is: Python does no per-row work. The parts are in api/:
one controller per resource, the token guard, the problem documents, the
services each request is given (pools, settings, metrics). This module
only puts them together; the database pools open in the lifespan, never
at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from litestar import Litestar, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsPlugin

import dataarch
from api import openapi, problems
from api.asgi import outermost
from api.backups import BackupsController
from api.batches import BatchesController
from api.health import HealthController, MetricsController
from api.kpis import KpisController
from api.metrics import Metrics
from api.negotiation import refuse_the_unacceptable
from api.pages import ReportsController, SignInController
from api.rejections import RejectionsController
from api.schemas import RELEASE_DICTIONARY
from api.security import Failures, SignInRequired, require_token, sign_in_first
from api.state import DEPENDENCIES, Services, open_pools, read_tables_at_start
from api.tables import MAX_BODY_BYTES, DictionaryController, LineageController, TablesController
from dataarch.settings import Settings

log = logging.getLogger("dataarch.api")
VERSION = dataarch.__version__  # one version: the package's, the CLI's, the backups'


async def _describe_the_databases_tables(app: Litestar) -> None:
    """The OpenAPI document describes the database's data dictionary, read
    now, before anyone has asked for the document; a database that does not
    answer within 2 s leaves it describing the release's (logged)."""
    try:
        async with asyncio.timeout(2):
            dictionary = await read_tables_at_start(app.state.services)
    except (TimeoutError, psycopg.Error) as failure:
        log.warning(
            "the OpenAPI document describes the release's tables, not the database's:"
            " its data dictionary was not read (%s)", failure or "no answer within 2 s",
        )  # fmt: skip
        return
    openapi.describe_tables(app.openapi_schema, dictionary, was=RELEASE_DICTIONARY)


def create_app(settings: Settings | None = None) -> Litestar:
    """The application for these settings (default: from the environment)."""
    settings = settings or Settings.from_env()
    if not settings.tokens:
        raise RuntimeError("no API token: set DATAARCH_API_TOKEN or DATAARCH_API_TOKEN_FILE")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool, blocking = open_pools(settings)
        await pool.open(wait=False)  # start even while the database is down
        blocking.open(wait=False)
        app.state.services = Services(
            settings=settings, pool=pool, blocking=blocking,
            tokens=tuple((t.value.encode(), t) for t in settings.tokens),
            metrics=metrics, failures=Failures(settings.auth_failure_limit),
        )  # fmt: skip
        await _describe_the_databases_tables(app)
        try:
            yield
        finally:
            blocking.close()
            await pool.close()

    protected = Router(
        path="/",
        route_handlers=[
            DictionaryController,
            TablesController,
            LineageController,
            BatchesController,
            RejectionsController,
            BackupsController,
            KpisController,
            ReportsController,
            MetricsController,
        ],  # fmt: skip
        guards=[require_token],
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[protected, HealthController, SignInController],
        dependencies=DEPENDENCIES,
        before_request=refuse_the_unacceptable,
        exception_handlers={SignInRequired: sign_in_first},
        lifespan=[lifespan],
        logging_config=None,  # the program that runs the app configures logging (dataarch.logs)
        request_max_body_size=MAX_BODY_BYTES,  # the largest body any route takes in one piece
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(exception_to_problem_detail_map=problems.HANDLERS)
            )
        ],  # fmt: skip
        openapi_config=OpenAPIConfig(
            title="dataarch",
            version=VERSION,
            description=(
                "Validated ingestion into the HR database (departments, jobs, employees)."
                " Errors are RFC 9457 problem documents (application/problem+json); a 503"
                " carries Retry-After. Every answer echoes X-Request-ID."
            ),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="an API token; its scope decides the routes",
                    )
                }
            ),  # fmt: skip
            use_handler_docstrings=False,
        ),
    )
    openapi.finish(app)
    # before routing: HEAD as GET, request ids, request metrics
    app.asgi_handler = outermost(app.asgi_handler, lambda: metrics)
    return app
