"""Connections: every program (CLI, app, tests) reaches the database through here.

Only `dataarch db start|init` and `dataarch up` start the embedded server
(start=True); everything else, the API above all, finds it running or says
it is not (ClusterError, exit status 3), and never starts or stops it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlencode

import psycopg
import psycopg.sql

from dataarch.errors import NotRunning as NotRunningError
from dataarch.pgserver import Cluster
from dataarch.settings import API_ROLE, EMBEDDED_DBNAME, Settings

# Every session runs in UTC, whatever the server's or the client's default.
SESSION_OPTIONS = "-c TimeZone=UTC"


class NotRunning(NotRunningError):
    """The embedded server is configured but stopped."""


def embedded_cluster(settings: Settings) -> Cluster:
    return Cluster(settings.cluster_dir)


def conninfo(settings: Settings, *, start: bool = False) -> str:
    """The admin connection string. With start, the embedded cluster is
    started (and its database made) when it is the one in use; without,
    a stopped one is NotRunning."""
    if settings.database_url or settings.use_pg_env:
        # "" lets libpq take PGHOST, PGPORT, ... from the environment
        base = settings.database_url or ""
        try:
            if settings.database_password:
                return psycopg.conninfo.make_conninfo(base, password=settings.database_password)
            psycopg.conninfo.conninfo_to_dict(base)  # refuse a malformed one here, clearly
        except psycopg.ProgrammingError as exc:
            raise ValueError(
                f"DATABASE_URL is not a libpq connection string or URL: {exc}"
            ) from None
        return base
    cluster = embedded_cluster(settings)
    if start:
        cluster.start()
        cluster.ensure_database(EMBEDDED_DBNAME)
    elif not cluster.is_running():
        raise NotRunning(
            f"the embedded PostgreSQL ({cluster.root}) is not running: start it with"
            " `dataarch db start` (or `make run`), or set DATABASE_URL"
        )
    return cluster.conninfo(EMBEDDED_DBNAME)


def url(settings: Settings) -> str:
    """The admin connection as a postgresql:// URL, for psql and people;
    without the password, which libpq finds itself (PGPASSWORD, ~/.pgpass)."""
    if settings.embedded:
        return embedded_cluster(settings).url(EMBEDDED_DBNAME)
    if settings.database_url and settings.database_url.startswith(("postgresql:", "postgres:")):
        return settings.database_url
    params = psycopg.conninfo.conninfo_to_dict(settings.database_url or "")
    params.pop("password", None)
    user, dbname = params.pop("user", ""), params.pop("dbname", "")
    host = params.get("host", "")
    at = ""
    if host and not host.startswith("/") and "," not in host:
        params.pop("host")
        at = f"[{host}]" if ":" in host else host
        if port := params.pop("port", ""):
            at += f":{port}"
    login = f"{quote(user, safe='')}@" if user else ""
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{login}{at}/{quote(dbname, safe='')}{query}"


def api_conninfo(settings: Settings) -> str:
    """The least-privilege connection the HTTP service uses. It never starts
    a server: a stopped one makes requests fail with 503 until it is back."""
    if settings.api_database_url:
        return settings.api_database_url
    if settings.embedded:
        admin = embedded_cluster(settings).conninfo(EMBEDDED_DBNAME)
    else:
        admin = conninfo(settings)
    # Same server and database, logged in as the API role.
    params = psycopg.conninfo.conninfo_to_dict(admin)
    params["user"] = API_ROLE
    params.pop("password", None)
    if settings.api_database_password:
        params["password"] = settings.api_database_password
    return psycopg.conninfo.make_conninfo(**params)


def set_api_password(conn: psycopg.Connection, settings: Settings) -> None:
    """Give the API role the password the deployment chose (Docker secret), if any."""
    if settings.api_database_password:
        conn.execute(
            psycopg.sql.SQL("alter role {} with password {}").format(
                psycopg.sql.Identifier(API_ROLE),
                psycopg.sql.Literal(settings.api_database_password),
            )
        )


def session_options(settings: Settings) -> str:
    """Every session runs in UTC and waits at most lock_timeout for a lock
    (a wait that runs out names who holds it: procedures/003_locks.sql)."""
    return f"{SESSION_OPTIONS} -c lock_timeout={int(settings.lock_timeout * 1000)}"


def connect(settings: Settings, *, start: bool = False, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(
        conninfo(settings, start=start), options=session_options(settings),
        connect_timeout=10, application_name=settings.application_name, **kwargs,
    )  # fmt: skip


@contextmanager
def operation(conn: psycopg.Connection, name: str) -> Iterator[None]:
    """Name the session after what it does ("dataarch backup") while it does
    it: another operation that finds a table busy says who holds it."""
    previous = conn.execute("select current_setting('application_name')").fetchone()[0]
    conn.execute("select set_config('application_name', %s, false)", (name,))
    try:
        yield
    finally:
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute("select set_config('application_name', %s, false)", (previous,))
