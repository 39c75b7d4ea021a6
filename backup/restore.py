"""Restore: one transaction that locks the tables, loads each file into a
staging table with COPY, lets the database replace the rows and compare
count and checksum (procedures/060), and commits only if every constraint
still holds. Anything wrong rolls back: the tables are exactly as they were.
A dry run does all of it and rolls back, to say what would change."""

from __future__ import annotations

import itertools
import operator
import os
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import fastavro
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from backup import store
from backup.columns import Column, avro_schema, table_columns
from backup.pipes import WorkerFailed, worker_processes
from dataarch import errors, installer
from dataarch.db import operation
from dataarch.dictionary import read as read_dictionary


class RestoreError(store.BackupError):
    """The restore did not happen; the message names the problem."""


class BusyError(store.BackupError):
    """A backup or another restore of the table runs, or a transaction holds
    it (the message says which). Exit status 4: nothing changed, try again."""

    status = 4


@dataclass(frozen=True)
class RestoreResult:
    table: str
    file: str
    rows: int
    added: int
    removed: int
    changed: int
    dry_run: bool = False
    # what followed the rows: migrated files forgotten (they may load again),
    # stored answers to repeated requests forgotten, rejections reopened
    bookkeeping: dict[str, int] | None = None


@dataclass
class _Staged:
    table: str
    path: Path
    rows: int
    checksum: str
    columns: list[str] | None  # the file's, when it lacks some of the table's


def open_reader(path: Path, files: ExitStack) -> fastavro.reader:
    try:
        f: BinaryIO = files.enter_context(path.open("rb"))
    except OSError as exc:
        raise RestoreError(f"cannot open {path.name}: {exc.strerror}") from exc
    try:
        return fastavro.reader(f)
    except Exception as exc:  # fastavro raises many types on a damaged header
        raise RestoreError(f"{path.name} is not an Avro backup file: {exc}") from exc


def _check_file(
    reader: fastavro.reader, path: Path, table: str, columns: list[Column]
) -> list[Column]:
    """The table's columns the file holds, in the table's order. A file of an
    earlier release may lack columns the table has since gained, when they
    may be NULL or have a default (a restore fills them in); anything else
    that differs is refused."""
    found = reader.metadata.get(f"{store.META}table")
    if found != table:
        raise RestoreError(
            f"{path.name} is a backup of {found or 'no dataarch table'}, not {table}"
        )
    expected = avro_schema(table, columns)["fields"]
    actual = [{"name": f["name"], "type": f["type"]} for f in reader.writer_schema["fields"]]
    held = [c for c, f in zip(columns, expected, strict=True) if f in actual]
    lacking = [c for c in columns if c not in held]
    if [f for f in expected if f in actual] != actual or any(
        not (c.nullable or c.has_default) for c in lacking
    ):
        described = ", ".join(f"{f['name']}:{f['type']}" for f in actual)
        wanted = ", ".join(f"{f['name']}:{f['type']}" for f in expected)
        raise RestoreError(f"{path.name} has columns ({described}); {table} has ({wanted})")
    for key in ("row_count", "checksum"):
        if f"{store.META}{key}" not in reader.metadata:
            raise RestoreError(f"{path.name} lacks the {key} a dataarch backup records")
    return held


def _as_is(text: str) -> str:
    return text


# A file this large or more is decoded by this process and worker processes
# (one a core but one) side by side, a chunk of blocks each in turn: fastavro
# decodes a record in ~4.6 us, most of a restore's Python time.
PARALLEL_FROM_BYTES = 4 << 20  # ~200 000 employee rows
CHUNK_BLOCKS = 64  # Avro blocks a chunk: ~16 000 employee rows


def _picker(names: list[str]) -> Callable[[dict], tuple]:
    """A record's values in the order of names: one itemgetter, not a loop
    over the names (5.4 s against 6.9 s for 965 000 employee rows)."""
    return operator.itemgetter(*names) if len(names) > 1 else lambda r: (r[names[0]],)


def _jsonb_wrapper(columns: list[Column]) -> Callable[[tuple], tuple]:
    """jsonb travels as its text: sent on as it is, not parsed."""
    jsonb = {i for i, c in enumerate(columns) if c.pg_type == "jsonb"}
    if not jsonb:
        return lambda row: row
    return lambda row: tuple(
        Jsonb(v, dumps=_as_is) if i in jsonb and v is not None else v for i, v in enumerate(row)
    )


def chunk_rows(
    path: Path, names: list[str], size: int, every: int, mine: int
) -> Iterator[tuple[int, list[tuple] | None]]:
    """The file's chunks of `size` blocks, in order: chunk c as its rows (in
    the order of names) when c % every == mine, else None (read past, not
    decoded). What this process and each decoding worker run."""
    pick = _picker(names)
    with path.open("rb") as f:
        blocks = fastavro.block_reader(f)
        for c in itertools.count():
            chunk = list(itertools.islice(blocks, size))
            if not chunk:
                return
            yield c, [pick(r) for block in chunk for r in block] if c % every == mine else None


def record_rows(path: Path, columns: list[Column]) -> Iterator[tuple]:
    """The file's records as tuples in the order of `columns`, in file order,
    decoded here alone or, from PARALLEL_FROM_BYTES, with workers. What a
    restore stages and a verify sums."""
    names, wrap = [c.name for c in columns], _jsonb_wrapper(columns)
    workers = (os.cpu_count() or 1) - 1 if path.stat().st_size >= PARALLEL_FROM_BYTES else 0
    every = workers + 1  # chunk c is this process's when c % every == 0, else a worker's
    orders = [("decode", str(path), names, CHUNK_BLOCKS, every, k) for k in range(1, every)]
    done = 0
    try:
        with worker_processes(orders) as pool:
            for c, mine in chunk_rows(path, names, CHUNK_BLOCKS, every, 0):
                rows = mine if mine is not None else pool[c % every - 1].answer()
                for row in rows:
                    yield wrap(row)
                done += len(rows)
    except WorkerFailed as exc:
        raise RestoreError(
            f"a restore worker process ended ({exc}) before it read its part of {path.name};"
            " nothing was changed"
        ) from None
    except Exception as exc:  # fastavro raises many types on damaged data
        raise RestoreError(f"{path.name} is damaged after record {done}: {exc}") from exc


def copy_file_rows(
    conn: psycopg.Connection, table: sql.Composable, path: Path, columns: list[Column]
) -> None:
    """COPY the records of the file at path into those columns of table."""
    query = sql.SQL("copy {} ({}) from stdin (format binary)").format(
        table, sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    with conn.cursor().copy(query) as copy:
        copy.set_types([c.copy_type for c in columns])
        for row in record_rows(path, columns):
            copy.write_row(row)


def _stage(conn: psycopg.Connection, table: str, path: Path, files: ExitStack) -> _Staged:
    """Lock `table`, check the file is a backup of it, and COPY its rows into staging."""
    table_has = table_columns(conn, table)
    reader = open_reader(path, files)
    columns = _check_file(reader, path, table, table_has)
    staging = conn.execute("select restore_begin(%s)", (table,)).fetchone()[0]
    copy_file_rows(conn, sql.Identifier(staging), path, columns)
    meta = reader.metadata
    return _Staged(
        table, path, int(meta[f"{store.META}row_count"]), meta[f"{store.META}checksum"],
        [c.name for c in columns] if columns != table_has else None,
    )  # fmt: skip


def require_schema(conn: psycopg.Connection, action: str) -> None:
    if installer.schema_version(conn) == "none":
        raise RestoreError(
            f"this database has no dataarch schema, which {action} needs: run `dataarch db"
            " init` first, or restore a whole set with `dataarch restore --all`, which installs it"
        )


def require_table(conn: psycopg.Connection, table: str) -> None:
    """table is one of the data dictionary's, else ValueError (a usage mistake)."""
    require_schema(conn, "a restore of one table")
    tables = read_dictionary(conn)
    if table not in tables:
        raise ValueError(
            f"{tables.unknown(table)}; the ingest log is restored only with its whole backup"
            " set (dataarch restore --all)"
        )


def restore_table(
    conn: psycopg.Connection,
    table: str,
    path: Path,
    *,
    dry_run: bool = False,
    catalogued_only: bool = False,
    lock_timeout: float = 10.0,
) -> RestoreResult:
    """Replace the rows of `table` with those of the backup at `path`.
    catalogued_only: accept only a state a backup of this database recorded
    (restore_finish, what the API role may call)."""
    with _translated(table), ExitStack() as files, operation(conn, "dataarch restore"):
        require_table(conn, table)
        with conn.transaction(force_rollback=dry_run):
            _limit_lock_waits(conn, lock_timeout)
            staged = _stage(conn, table, path, files)
            if catalogued_only:
                changes = conn.execute(
                    "select restore_finish(%s, %s, %s, %s, %s, %s)",
                    (table, staged.rows, staged.checksum, staged.path.name,
                     Jsonb(staged.columns) if staged.columns else None, dry_run),
                ).fetchone()[0]  # fmt: skip
            else:
                done = _replace(conn, [staged], dry_run)
                changes = {**done[table], "bookkeeping": done["bookkeeping"]}
    return _result(staged, changes, dry_run)


def restore_set(
    conn: psycopg.Connection,
    backup_dir: Path,
    name: str | None = None,
    *,
    dry_run: bool = False,
    lock_timeout: float = 10.0,
) -> list[RestoreResult]:
    """Restore every table of a set (default: the newest complete full one;
    a partial one only when named) in one transaction, referenced tables
    first, into a database with the schema or without it (installed first).
    Needs the owner's connection."""
    found = store.find_set(backup_dir, name)
    if not found.complete:
        raise RestoreError(
            f"set {found.name} is incomplete: the files of {', '.join(found.missing)}"
            " are gone; choose another set (`dataarch backups`)"
        )
    with (
        _translated("the set's tables"),
        ExitStack() as files,
        operation(conn, "dataarch restore"),
        conn.transaction(force_rollback=dry_run),
    ):
        _limit_lock_waits(conn, lock_timeout)
        installer.install(conn)
        order = conn.execute("select _backup_tables()").fetchone()[0]
        tables = [t for t in order if t in found.files]
        conn.execute("select restore_lock(%s)", (tables,))  # all of them, in the lock order
        staged = [_stage(conn, t, backup_dir / str(found.files[t]["file"]), files) for t in tables]
        changes = _replace(conn, staged, dry_run)
    return [_result(s, {**changes[s.table], "bookkeeping": changes["bookkeeping"]}, dry_run)
            for s in staged]  # fmt: skip


def _limit_lock_waits(conn: psycopg.Connection, seconds: float) -> None:
    conn.execute(sql.SQL("set local lock_timeout = {}").format(f"{int(seconds * 1000)}ms"))


def _replace(conn: psycopg.Connection, staged: list[_Staged], dry_run: bool) -> dict[str, dict]:
    states = {
        s.table: {"rows": s.rows, "checksum": s.checksum, "file": s.path.name, "columns": s.columns}
        for s in staged
    }
    return conn.execute("select _restore_tables(%s, %s)", (Jsonb(states), dry_run)).fetchone()[0]


def _result(staged: _Staged, changes: dict, dry_run: bool) -> RestoreResult:
    return RestoreResult(
        table=staged.table, file=staged.path.name, rows=changes["rows"],
        added=changes["added"], removed=changes["removed"], changed=changes["changed"],
        dry_run=dry_run, bookkeeping=changes.get("bookkeeping"),
    )  # fmt: skip


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Database errors of a restore as RestoreError or BusyError, phrased for a person."""
    try:
        yield
    except psycopg.Error as exc:
        diag, entry = exc.diag, errors.of_error(exc)
        if entry.busy:
            raise BusyError(
                f"{diag.message_primary or what + ' is busy'}; nothing changed:"
                " try again in a moment"
            ) from exc
        if isinstance(exc, psycopg.OperationalError):
            raise  # the connection itself: the caller says "cannot reach the database"
        constraint = _constraint_of(exc)
        if isinstance(exc, psycopg.errors.ForeignKeyViolation):
            raise RestoreError(
                f"restoring {what} would break a reference ({constraint}):"
                f" {diag.message_detail}; nothing changed"
            ) from exc
        if isinstance(exc, psycopg.errors.IntegrityError) or constraint:
            raise RestoreError(
                f"the backup holds a row that breaks {constraint or 'a constraint'}:"
                f" {diag.message_detail or diag.message_primary}; nothing changed"
            ) from exc
        if entry.refusal:
            raise RestoreError(f"{diag.message_primary}; nothing changed") from exc
        raise


# Citus reports a worker's constraint error without its name, on a shard
# ("employees_pkey_102010"), sometimes as XX000: the name is in the message.
_NAMED = re.compile(r'(?:constraint|index) "([^"]+)"')
_SHARD_ID = re.compile(r"_\d+$")


def _constraint_of(exc: psycopg.Error) -> str | None:
    """The constraint a database error names, without a Citus shard suffix."""
    name = exc.diag.constraint_name
    if name is None and (found := _NAMED.search(exc.diag.message_primary or "")):
        name = found.group(1)
    return _SHARD_ID.sub("", name) if name else None
