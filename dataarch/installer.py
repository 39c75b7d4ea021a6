"""The SQL installer: applies schema/, procedures/ and views/ in numbered order.

The CLI (`dataarch db init`), the app, the tests and the benchmarks all call
`install`. Files run without query parameters, so `%` in RAISE is safe, and
all of them in one transaction under an advisory lock, so a failed or
concurrent install leaves nothing half-applied.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg

from dataarch.settings import PROJECT_DIR

SQL_DIRS = ("schema", "procedures", "views")
_LOCK_KEY = 0x64617461  # "data": serialises concurrent installers


class InstallError(RuntimeError):
    """An SQL file failed; the message names the file."""


def sql_files(project_dir: Path = PROJECT_DIR) -> list[Path]:
    return [path for d in SQL_DIRS for path in sorted((project_dir / d).glob("*.sql"))]


def install(conn: psycopg.Connection) -> list[str]:
    """Apply every SQL file; return the names of those that changed since the last install."""
    changed = []
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for path in sql_files():
            name = f"{path.parent.name}/{path.name}"
            text = path.read_text()
            try:
                conn.execute(text.encode())  # no parameters: sent as a simple query
            except psycopg.Error as exc:
                raise InstallError(f"{name}: {exc.diag.message_primary or exc}") from exc
            digest = hashlib.sha256(text.encode()).hexdigest()
            previous = conn.execute(
                "insert into installed_sql (file_name, sha256) values (%s, %s)"
                " on conflict (file_name) do update set sha256 = excluded.sha256,"
                " installed_at = now()"
                " returning (select sha256 from installed_sql where file_name = %s)",
                (name, digest, name),
            ).fetchone()
            if previous is None or previous[0] != digest:
                changed.append(name)
    return changed


def schema_version(conn: psycopg.Connection) -> str:
    """A short hash of the installed SQL; equal databases have equal versions."""
    row = conn.execute(
        "select left(md5(string_agg(file_name || sha256, ',' order by file_name)), 12)"
        " from installed_sql"
    ).fetchone()
    return row[0] if row and row[0] else "none"


def load_for_pytest(host: str, port: int | str, user: str, dbname: str, **_: object) -> None:
    """pytest-postgresql `load=` hook: install the schema into the template database."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        install(conn)
