"""Connections: every program (CLI, app, tests) reaches the database through here."""

from __future__ import annotations

import psycopg

from dataarch.pgserver import Cluster
from dataarch.settings import API_ROLE, EMBEDDED_DBNAME, Settings

# Every session runs in UTC, whatever the server's or the client's default.
SESSION_OPTIONS = "-c TimeZone=UTC"


def embedded_cluster(settings: Settings) -> Cluster:
    return Cluster(settings.cluster_dir)


def conninfo(settings: Settings, *, start: bool = True) -> str:
    """The admin connection string; starts the embedded cluster when it is the one in use."""
    if settings.database_url:
        return settings.database_url
    if settings.use_pg_env:
        return ""  # libpq takes PGHOST, PGPORT, ... from the environment
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
    return psycopg.conninfo.make_conninfo(**params)


def connect(settings: Settings, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(conninfo(settings), options=SESSION_OPTIONS, **kwargs)
