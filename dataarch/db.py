"""Connections: every program (CLI, app, tests) reaches the database through here."""

from __future__ import annotations

import psycopg
import psycopg.sql

from dataarch.pgserver import Cluster
from dataarch.settings import API_ROLE, EMBEDDED_DBNAME, Settings

# Every session runs in UTC, whatever the server's or the client's default.
SESSION_OPTIONS = "-c TimeZone=UTC"


def embedded_cluster(settings: Settings) -> Cluster:
    return Cluster(settings.cluster_dir)


def conninfo(settings: Settings, *, start: bool = True) -> str:
    """The admin connection string; starts the embedded cluster when it is the one in use."""
    if settings.database_url or settings.use_pg_env:
        # "" lets libpq take PGHOST, PGPORT, ... from the environment
        base = settings.database_url or ""
        if settings.database_password:
            return psycopg.conninfo.make_conninfo(base, password=settings.database_password)
        return base
    cluster = embedded_cluster(settings)
    if start:
        cluster.start()
        cluster.ensure_database(EMBEDDED_DBNAME)
    return cluster.conninfo(EMBEDDED_DBNAME)


def api_conninfo(settings: Settings) -> str:
    """The least-privilege connection the HTTP service uses."""
    if settings.api_database_url:
        return settings.api_database_url
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


def connect(settings: Settings, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(conninfo(settings), options=SESSION_OPTIONS, **kwargs)
