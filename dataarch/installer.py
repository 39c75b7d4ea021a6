"""The SQL installer: forward-only migrations, then repeatable code.

`schema/NNN_*.sql` are migrations: each is applied once, in order, and
recorded with its checksum in `installed_sql`; an applied file whose content
changed is refused, because its change would never reach a database that
already ran it (a change to a table is a new file with an ALTER).
`procedures/` and `views/` are repeatable (CREATE OR REPLACE): applied when
new or changed, and all of them again after any migration, which may have
dropped what they define.

The CLI (`dataarch db init|status`), the tests and the benchmarks all call
this module. Files run without query parameters, so `%` in RAISE is safe,
and all of them in one transaction under an advisory lock, so a failed or
concurrent install leaves nothing half-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from dataarch.errors import Busy, Failure
from dataarch.settings import PROJECT_DIR

MIGRATIONS_DIR = "schema"
REPEATABLE_DIRS = ("procedures", "views")
_LOCK_KEY = 0x64617461  # "data": serialises concurrent installers


class InstallError(Failure):
    """An SQL file failed or may not be applied; the message names the file."""


@dataclass(frozen=True)
class SqlFile:
    name: str  # "schema/002_employees.sql": the key in installed_sql
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def is_migration(self) -> bool:
        return self.name.startswith(f"{MIGRATIONS_DIR}/")


@dataclass
class Plan:
    """What an install would do to one database."""

    version: str  # the last applied migration, or "none"
    pending: list[SqlFile] = field(default_factory=list)  # migrations not yet applied
    repeatable: list[SqlFile] = field(default_factory=list)  # code to (re)apply
    edited: list[str] = field(default_factory=list)  # applied migrations changed since

    @property
    def up_to_date(self) -> bool:
        return not (self.pending or self.repeatable or self.edited)


def sql_files(project_dir: Path = PROJECT_DIR) -> list[SqlFile]:
    """Every SQL file in the order it is applied."""
    dirs = (MIGRATIONS_DIR, *REPEATABLE_DIRS)
    return [
        SqlFile(f"{d}/{path.name}", path.read_text())
        for d in dirs
        for path in sorted((project_dir / d).glob("*.sql"))
    ]


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    """file name -> sha256 of what was applied; empty for a database without the schema."""
    if conn.execute("select to_regclass('installed_sql')").fetchone()[0] is None:
        return {}
    return dict(conn.execute("select file_name, sha256 from installed_sql").fetchall())


def plan(conn: psycopg.Connection, project_dir: Path = PROJECT_DIR) -> Plan:
    applied = _applied(conn)
    files = sql_files(project_dir)
    migrations = [f for f in files if f.is_migration]
    done = [f for f in migrations if f.name in applied]
    result = Plan(version=_version_of([f.name for f in done]))
    result.edited = [f.name for f in done if applied[f.name] != f.sha256]
    result.pending = [f for f in migrations if f.name not in applied]
    result.repeatable = [
        f
        for f in files
        if not f.is_migration and (result.pending or applied.get(f.name) != f.sha256)
    ]
    return result


def install(conn: psycopg.Connection, project_dir: Path = PROJECT_DIR) -> list[str]:
    """Apply pending migrations, then new or changed code, in one transaction;
    return the names of the files applied (none when the database is current)."""
    with conn.transaction():
        _take_install_lock(conn)
        todo = plan(conn, project_dir)
        if todo.edited:
            raise InstallError(
                f"{', '.join(todo.edited)}: already applied to this database with other"
                " content. Applied migrations never change: restore the file"
                f" (git checkout -- {' '.join(todo.edited)}) and put the change in a new"
                f" {MIGRATIONS_DIR}/NNN_*.sql file."
            )
        for sql_file in [*todo.pending, *todo.repeatable]:
            _apply(conn, sql_file)
        secure(conn)
        distributed = _distribute(conn, project_dir)
    return [f.name for f in [*todo.pending, *todo.repeatable]] + distributed


def _take_install_lock(conn: psycopg.Connection) -> None:
    """The lock that serialises installs (every command installs first),
    waited for up to lock_timeout; then Busy naming who holds it."""
    try:
        with conn.transaction():  # a savepoint: after a wait that ran out, conn can still ask
            conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    except psycopg.errors.LockNotAvailable:
        named = conn.execute("select to_regprocedure('lock_holders(regclass, bigint)')")
        holders = "another session"
        if named.fetchone()[0] is not None:
            holders = conn.execute("select lock_holders(null, %s)", (_LOCK_KEY,)).fetchone()[0]
        raise Busy(f"the schema is busy: {holders} holds the install lock; nothing changed:"
                   " try again when it has finished") from None  # fmt: skip


def secure(conn: psycopg.Connection) -> None:
    """Close what PostgreSQL leaves open by default (procedures/080_trust.sql:
    temporary objects for everyone); on every install, since a database
    cloned from an installed one does not inherit its privileges."""
    conn.execute("select secure_database()")


def _distribute(conn: psycopg.Connection, project_dir: Path) -> list[str]:
    """On Citus, distribute the tables (procedures/005_engine.sql says how);
    that replaces the hire_counts table, dropping the views over it, so they
    are applied again. Returns what changed; nothing on plain PostgreSQL."""
    changes = conn.execute("select distribute_tables()").fetchone()[0]
    if changes:
        for sql_file in sql_files(project_dir):
            if sql_file.name.startswith("views/"):
                _apply(conn, sql_file)
    return [f"citus: {change}" for change in changes]


_TOKEN = re.compile(
    r"""--[^\n]*|/\*.*?\*/|[Ee]'(?:\\.|[^'\\])*'|'(?:''|[^'])*'|"(?:""|[^"])*"
    |(\$[A-Za-z_0-9]*\$)(?:.|\n)*?\1|;""",
    re.DOTALL | re.VERBOSE,
)


def statements(text: str) -> list[str]:
    """text's SQL statements, split at each semicolon outside comments,
    strings, quoted names and dollar-quoted bodies."""
    found, start = [], 0
    for token in _TOKEN.finditer(text):
        if token.group() == ";":
            found.append(text[start : token.end()])
            start = token.end()
    found.append(text[start:])
    return [s for s in found if _TOKEN.sub("", s).strip()]


def _apply(conn: psycopg.Connection, sql_file: SqlFile) -> None:
    """One statement at a time (with no parameters: each a simple query):
    Citus sends a DDL statement's whole query string to its workers, which
    refuse one that holds several."""
    for statement in statements(sql_file.text):
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            line = sql_file.text.count("\n", 0, sql_file.text.index(statement)) + 1
            where = f"{sql_file.name}, the statement at line {line}"
            raise InstallError(f"{where}: {exc.diag.message_primary or exc}") from exc
    conn.execute(
        "insert into installed_sql (file_name, sha256) values (%s, %s)"
        " on conflict (file_name) do update set sha256 = excluded.sha256, installed_at = now()",
        (sql_file.name, sql_file.sha256),
    )


def _version_of(migration_names: list[str]) -> str:
    return Path(max(migration_names)).stem if migration_names else "none"


def schema_version(conn: psycopg.Connection) -> str:
    """The last migration applied to this database ("007_backup_catalog"), or "none"."""
    return _version_of([n for n in _applied(conn) if n.startswith(f"{MIGRATIONS_DIR}/")])


def engine(conn: psycopg.Connection) -> dict:
    """engine_status() (procedures/005_engine.sql); PostgreSQL before an install."""
    if conn.execute("select to_regprocedure('engine_status()')").fetchone()[0] is None:
        return {"engine": "postgresql"}
    return conn.execute("select engine_status()").fetchone()[0]


def load_for_pytest(host: str, port: int | str, user: str, dbname: str, **_: object) -> None:
    """pytest-postgresql `load=` hook: install the schema into the template database."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname) as conn:
        install(conn)
