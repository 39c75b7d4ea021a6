"""What every request may use, built once in the lifespan and injected into
handlers by parameter name (Litestar's dependency injection): `pool` (async,
for the request's own queries), `blocking` (a pool of plain connections for
the routes that run in a worker thread: backups, restores, uploads,
reports), `settings`, `metrics`, and `tables` (the data dictionary, read
from the database on first use and kept: the tables change only by a
migration, and a new table is served after a restart)."""

from __future__ import annotations

import select
from dataclasses import dataclass

import psycopg
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from api.metrics import Metrics
from api.security import Failures
from dataarch import db
from dataarch.dictionary import Dictionary
from dataarch.dictionary import read_async as read_dictionary
from dataarch.settings import ApiToken, Settings


@dataclass
class Services:
    settings: Settings
    pool: AsyncConnectionPool
    blocking: ConnectionPool
    tokens: tuple[tuple[bytes, ApiToken], ...]
    metrics: Metrics
    failures: Failures  # failed token checks and sign-ins per client address
    dictionary: Dictionary | None = None  # read on first use (the database may start later)


def services(state: State) -> Services:
    return state.services


async def _check_if_suspect(conn: psycopg.AsyncConnection) -> None:
    """The pool's check of a connection it hands out, without a round trip
    each time (0.37 ms of a 1000-row POST). An idle connection has nothing to
    read unless the server closed it or sent it an error (a restart, a
    terminated backend): only then is the full check, an empty query, run."""
    waiting = select.poll()  # poll, not select: a busy server's fds pass 1024
    waiting.register(conn.fileno(), select.POLLIN)
    if waiting.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def connection_options(settings: Settings) -> dict[str, object]:
    # a request waits at most lock_timeout for a table a restore holds (503)
    return {"options": db.session_options(settings), "connect_timeout": 3,
            "application_name": "dataarch api"}  # fmt: skip


def open_pools(settings: Settings) -> tuple[AsyncConnectionPool, ConnectionPool]:
    """The two pools, as the API role; they start even while the database is down."""
    conninfo = db.api_conninfo(settings)
    pool = AsyncConnectionPool(
        conninfo, kwargs={**connection_options(settings), "autocommit": True},
        min_size=2, max_size=10,
        timeout=3,  # a request waits this long for a connection, then gets 503
        check=_check_if_suspect,  # drop connections a restart broke
        open=False,
    )  # fmt: skip
    blocking = ConnectionPool(
        conninfo, kwargs=connection_options(settings), min_size=0, max_size=4, timeout=10,
        check=ConnectionPool.check_connection, open=False,
    )  # fmt: skip
    return pool, blocking


def _pool(state: State) -> AsyncConnectionPool:
    return state.services.pool


def _blocking(state: State) -> ConnectionPool:
    return state.services.blocking


def _settings(state: State) -> Settings:
    return state.services.settings


def _metrics(state: State) -> Metrics:
    return state.services.metrics


async def read_tables_at_start(services: Services) -> Dictionary:
    """The database's data dictionary, read at startup on a connection of
    its own, and kept. (Taken from the pool while the pool was still
    opening, it left the pool unable to replace its connections in time
    once the database had ended them all: a 503 in 2 runs of 3 of
    test_connections_the_server_dropped_are_replaced_unseen; not fully
    explained.)"""
    conninfo = db.api_conninfo(services.settings)
    options = {**connection_options(services.settings), "autocommit": True}
    async with await psycopg.AsyncConnection.connect(conninfo, **options) as conn:
        services.dictionary = await read_dictionary(conn)
    return services.dictionary


async def tables(state: State) -> Dictionary:
    """The database's data dictionary, read once, on first use."""
    return await dictionary_of(state.services)


async def dictionary_of(found: Services) -> Dictionary:
    """found's data dictionary, read from the database on first use."""
    if found.dictionary is None:
        async with found.pool.connection() as conn:
            found.dictionary = await read_dictionary(conn)
    return found.dictionary


# What handlers declare to receive them: injected by name, as they are.
Pool = NamedDependency[AsyncConnectionPool]
BlockingPool = NamedDependency[ConnectionPool]
AppSettings = NamedDependency[Settings]
AppMetrics = NamedDependency[Metrics]
AppServices = NamedDependency[Services]
DataTables = NamedDependency[Dictionary]

DEPENDENCIES = {
    name: Provide(provider, sync_to_thread=False)
    for name, provider in [("services", services), ("pool", _pool), ("blocking", _blocking),
                           ("settings", _settings), ("metrics", _metrics)]
} | {"tables": Provide(tables)}  # fmt: skip
