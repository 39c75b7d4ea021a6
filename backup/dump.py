"""Backup: rows stream from COPY ... TO STDOUT into fastavro, one block at a
time, so memory stays flat however large the table is. The tables of one
backup are read in one REPEATABLE READ snapshot, so the files agree with
each other (no employee points at a department the departments file lacks),
and written as one set: every file or none (see store.py).

A large table is read and encoded by as many processes as cores, as
pg_dump -j does: each worker (backup/worker.py, a process of its own on
two pipes) joins the snapshot (SET TRANSACTION SNAPSHOT),
COPYs one range of the table's pages and encodes it into complete Avro
blocks ending in the file's sync marker; this process writes the header and
the blocks in page order, and encodes its share of the parts meanwhile.
Encoding, not COPY, is the cost (~3 us a row in Python against 0.4 us in
the server), so it is what the cores share.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

import dataarch
from backup import store
from backup.columns import TIMESTAMP, Column, avro_schema, table_columns
from backup.pipes import WorkerFailed, WorkerProcess, worker_processes
from dataarch.db import operation
from dataarch.installer import schema_version

CODECS = ("deflate", "snappy", "null")
PAGES_PER_PART = 512  # ~4 MB of table, ~50k employee rows: one worker task


@dataclass(frozen=True)
class Part:
    """One worker task: the rows of `table` on pages [first_page, end_page)."""

    table: str
    columns: tuple[Column, ...]
    codec: str
    sync_marker: bytes
    first_page: int
    end_page: int | None  # None: to the end of the table


@dataclass
class BackupSet:
    """What one backup wrote, and what its retention removed."""

    name: str
    files: list[store.BackupInfo]
    pruned: list[Path] = field(default_factory=list)


def _select_list(columns: Iterable[Column]) -> sql.Composable:
    """Timestamps leave the database as epoch microseconds (what Avro stores),
    jsonb as its text."""
    parts = []
    for c in columns:
        ident = sql.Identifier(c.name)
        if c.pg_type == TIMESTAMP:
            parts.append(sql.SQL("(extract(epoch from {}) * 1000000)::int8").format(ident))
        elif c.pg_type == "jsonb":
            parts.append(sql.SQL("{}::text").format(ident))
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


def _out_type(column: Column) -> str:
    return {TIMESTAMP: "int8", "jsonb": "text"}.get(column.pg_type, column.copy_type)


def _records(conn: psycopg.Connection, part: Part) -> Iterator[dict]:
    pages = sql.SQL("ctid >= {}::tid").format(f"({part.first_page},0)")
    if part.end_page is not None:
        pages += sql.SQL(" and ctid < {}::tid").format(f"({part.end_page},0)")
    query = sql.SQL("copy (select {} from {} where {}) to stdout (format binary)").format(
        _select_list(part.columns), sql.Identifier(part.table), pages
    )
    names = [c.name for c in part.columns]
    with conn.cursor().copy(query) as copy:
        copy.set_types([_out_type(c) for c in part.columns])
        for row in copy.rows():
            yield dict(zip(names, row, strict=True))


def _writer_args(part: Part) -> dict:
    schema = fastavro.parse_schema(avro_schema(part.table, list(part.columns)))
    # deflate at level 1: 20% faster than the default level, and no larger here
    level = 1 if part.codec == "deflate" else None
    return {
        "schema": schema,
        "codec": part.codec,
        "codec_compression_level": level,
        "sync_marker": part.sync_marker,
    }


def encode(conn: psycopg.Connection, part: Part) -> bytes:
    """The part's rows as Avro blocks, without the header a file starts with."""
    args = _writer_args(part)
    header, out = io.BytesIO(), io.BytesIO()
    fastavro.writer(header, records=[], **args)
    fastavro.writer(out, records=_records(conn, part), **args)
    return out.getvalue()[header.tell() :]


# -- worker processes ------------------------------------------------------------------


def _parts(conn: psycopg.Connection, table: str, template: Part) -> list[Part]:
    pages = conn.execute(
        "select pg_relation_size(%s) / current_setting('block_size')::int", (table,)
    ).fetchone()[0]
    starts = list(range(0, max(pages, 1), PAGES_PER_PART))
    ends: list[int | None] = [*starts[1:], None]  # the last part reads to the end
    return [
        Part(template.table, template.columns, template.codec, template.sync_marker, s, e)
        for s, e in zip(starts, ends, strict=True)
    ]


def _blocks(conn: psycopg.Connection, parts: list[Part]) -> Iterator[bytes]:
    """Each part's blocks, in order. With several parts and cores, worker
    processes encode some in the backup's snapshot and this process the
    others (every `workers + 1`-th), so one process fewer holds Python,
    psycopg and fastavro in memory (a worker is ~45 MB)."""
    workers = min(len(parts), os.cpu_count() or 1) - 1
    if workers < 1:
        for part in parts:
            yield encode(conn, part)
        return
    snapshot = conn.execute("select pg_export_snapshot()").fetchone()[0]
    lock_ms = conn.execute("select current_setting('lock_timeout')").fetchone()[0]
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password or None)
    orders = ("encode", conninfo, snapshot, _milliseconds(lock_ms))
    try:
        with worker_processes([orders] * workers) as pool:
            # part i is the worker i % (workers + 1) - 1's, or this process's at 0
            theirs = (i for i in range(len(parts)) if i % (workers + 1))
            pending: dict[int, WorkerProcess] = {}
            for i, part in enumerate(parts):
                # two parts a worker in flight at most: one it encodes, one
                # waiting; a finished part waits in its pipe until read
                while len(pending) < 2 * workers and (j := next(theirs, None)) is not None:
                    pending[j] = pool[j % (workers + 1) - 1]
                    pending[j].send(parts[j])
                yield pending.pop(i).answer() if i in pending else encode(conn, part)
    except WorkerFailed as exc:
        raise store.BackupError(
            f"a backup worker process ended ({exc}) before its part was encoded;"
            " nothing was written"
        ) from None


def _milliseconds(setting: str) -> int:
    """lock_timeout as the server shows it ("10s", "500ms", "0") in ms."""
    units = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
    number = setting.rstrip("abcdefghijklmnopqrstuvwxyz")
    return int(float(number) * units.get(setting[len(number) :], 1))


# -- files and sets ---------------------------------------------------------------------


def _refuse_unstorable_rows(conn: psycopg.Connection, table: str) -> None:
    """Rows an earlier release let in that a restore would refuse (see
    rows_breaking_constraints): a backup holding them could never be restored."""
    broken = conn.execute(
        "select constraint_name, string_agg(row_key, ', ') from rows_breaking_constraints(%s)"
        " group by 1 order by 1",
        (table,),
    ).fetchall()
    if broken:
        listed = "; ".join(f"{name}: {keys}" for name, keys in broken)
        raise store.BackupError(
            f"{table} holds rows no restore would accept ({listed}); nothing was written."
            " `dataarch db check` lists them all: correct or delete them, then back up again"
        )


def _dump_table(
    conn: psycopg.Connection, table: str, path: Path, set_name: str, codec: str, version: str
) -> None:
    columns = tuple(table_columns(conn, table))
    rows, checksum = conn.execute(
        "select * from backup_record(%s, %s, %s)", (set_name, table, path.name)
    ).fetchone()
    metadata = {
        f"{store.META}table": table,
        f"{store.META}row_count": str(rows),
        f"{store.META}checksum": checksum,
        f"{store.META}created_at": datetime.now(UTC).isoformat(),
        f"{store.META}schema_version": version,
        f"{store.META}set": set_name,
        f"{store.META}columns": json.dumps([c.as_list() for c in columns]),
    }
    template = Part(table, columns, codec, os.urandom(16), 0, None)
    with store.partial_file(path) as f:
        fastavro.writer(f, records=[], metadata=metadata, **_writer_args(template))
        for block in _blocks(conn, _parts(conn, table, template)):
            f.write(block)


@contextmanager
def _no_restore_meanwhile(
    conn: psycopg.Connection, tables: list[str], waiting: Callable[[str], None]
) -> Iterator[None]:
    """Hold each table's backup lock, shared, for the whole backup: a restore
    of it refuses at once instead of queueing (see procedures/060). Taken
    before the snapshot, so a restore that is running is waited for first."""
    held: list[str] = []
    try:
        for table in tables:
            got = conn.execute(
                "select pg_try_advisory_lock_shared(backup_lock_key(%s))", (table,)
            ).fetchone()[0]
            if not got:
                waiting(f"waiting for a restore of {table} to finish")
                conn.execute("select backup_lock_shared(%s)", (table,))  # bounded, named
            held.append(table)
        yield
    finally:
        for table in held:
            conn.execute("select pg_advisory_unlock_shared(backup_lock_key(%s))", (table,))


def backup_tables(
    conn: psycopg.Connection,
    tables: Iterable[str] | None,
    backup_dir: Path,
    codec: str = "deflate",
    keep: int | None = None,
    keep_days: float | None = None,
    waiting: Callable[[str], None] = lambda _: None,
) -> BackupSet:
    """Write one set: a file per table (default: every table a backup holds),
    all from one snapshot, all or none; then, once it is complete, remove
    whole sets by retention (store.prune: the newest `keep` full sets and
    the newest `keep` partial ones of each table, and `keep_days`), never
    the set just written."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    if keep is not None and keep < 1:
        raise ValueError(f"--keep must be at least 1 (the backup just written), not {keep}")
    if keep_days is not None and keep_days <= 0:
        raise ValueError(f"--keep-days must be more than 0, not {keep_days}")
    previous, conn.autocommit = conn.autocommit, True  # locks, then the snapshot: in order
    try:
        known = conn.execute("select _backup_tables()").fetchone()[0]
        wanted = list(tables or known)
        if unknown := [t for t in wanted if t not in known]:
            raise ValueError(f"no table {unknown[0]!r} is backed up: use {', '.join(known)}")
        ordered = [t for t in known if t in wanted]
        name = store.set_name()
        paths = [store.file_path(backup_dir, t, name) for t in ordered]
        with (
            store.writing(backup_dir),
            operation(conn, "dataarch backup"),
            _no_restore_meanwhile(conn, ordered, waiting),
        ):
            _write_set(conn, ordered, paths, name, backup_dir, codec)
            written = BackupSet(name, [store.read_info(p) for p in paths])
            if keep is not None or keep_days is not None:
                written.pruned = store.prune(backup_dir, keep, keep_days, protect=name)
    finally:
        conn.autocommit = previous
    return written


def _write_set(
    conn: psycopg.Connection,
    tables: list[str],
    paths: list[Path],
    name: str,
    backup_dir: Path,
    codec: str,
) -> None:
    """Files, manifest and catalogue entries of one set, or none of them."""
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    started = datetime.now(UTC).isoformat()
    try:
        with conn.transaction():
            version = schema_version(conn)
            for table in tables:
                _refuse_unstorable_rows(conn, table)
            numbered = conn.execute(
                "select backup_set_begin(%s, %s, %s)",
                (name, tables, store.highest_number(backup_dir)),
            ).fetchone()[0]
            for table, path in zip(tables, paths, strict=True):
                _dump_table(conn, table, path, name, codec, version)
            store.promote(paths)
            files = {
                t: {"file": f"{t}/{p.name}", "rows": store.read_info(p).rows,
                    "sha256": store.sha256_of(p), "bytes": p.stat().st_size}
                for t, p in zip(tables, paths, strict=True)
            }  # fmt: skip
            about = {"started_at": started, "stopped_at": datetime.now(UTC).isoformat(),
                     "schema_version": version, **_database_facts(conn)}  # fmt: skip
            store.write_manifest(backup_dir, store.SetInfo(
                name, started, files, number=numbered["number"], kind=numbered["kind"], about=about
            ))  # fmt: skip
    except OSError as exc:
        store.discard([*paths, store.manifest_path(backup_dir, name)])
        raise store.storage_error("write the backup", exc) from exc
    except BaseException:
        store.discard([*paths, store.manifest_path(backup_dir, name)])
        raise
    finally:
        conn.isolation_level = None


def _database_facts(conn: psycopg.Connection) -> dict[str, object]:
    """Which database and server a set was read from, as pgBackRest records
    them, and the release that wrote it."""
    system, server = conn.execute(
        "select (select system_identifier from pg_control_system())::text,"
        " current_setting('server_version')"
    ).fetchone()
    return {"system_identifier": system, "postgresql": server, "dataarch": dataarch.__version__}
