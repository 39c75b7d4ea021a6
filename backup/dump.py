"""Backup: rows stream from COPY ... TO STDOUT as Avro blocks, a few pages'
rows at a time, so memory stays flat however large the table is. The tables of one
backup are read in one REPEATABLE READ snapshot, so the files agree with
each other (no employee points at a department the departments file lacks),
and written as one set: every file or none (see store.py).

The database writes the Avro records (procedures/055): a backup's COPY
returns each block's records already encoded, and Python only compresses
them and frames the blocks. A large table is read by as many sessions as
cores, as pg_dump -j does: each worker (backup/worker.py, a process of its
own on two pipes) joins the snapshot (SET TRANSACTION SNAPSHOT) and COPYs
one range of the table's pages as Avro blocks ending in the file's sync
marker; this process reads its share of the parts in a session of its own
and writes the blocks in page order after the header, whose checksum the
backup's session computes meanwhile (_write_while_recording). Encoding is
the cost (~2.4 us a row in the server against 0.7 for the plain COPY), so
it is what the cores share, with the checksum's pass (~1.2 us a row).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import cramjam
import fastavro
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

import dataarch
from backup import store
from backup.columns import Column, avro_schema, table_columns
from backup.pipes import WorkerFailed, WorkerProcess, worker_processes
from dataarch.db import operation
from dataarch.installer import schema_version

# The sessions that join a backup's snapshot: how they are named, and how
# long one may sit in its transaction before it ends by itself.
APPLICATION_NAME = "dataarch backup worker"
IDLE_MS = 60_000
PAGES_PER_PART = 512  # ~4 MB of table, ~50k employee rows: one worker task


@dataclass(frozen=True)
class Part:
    """One worker task: the rows of `table` on pages [first_page, end_page)."""

    table: str
    columns: tuple[Column, ...]
    codec: str
    sync_marker: bytes
    # None: the whole table, read by rows: it has no pages here (Citus keeps
    # a distributed or reference table's rows on the workers), or no rows
    first_page: int | None
    end_page: int | None  # None: to the end of the table


@dataclass
class BackupSet:
    """What one backup wrote, and what its retention removed."""

    name: str
    files: list[store.BackupInfo]
    pruned: list[Path] = field(default_factory=list)
    pruning_deferred: bool = False  # another backup was writing: the next one prunes


BLOCK_PAGES = 4  # an Avro block: the rows of 4 table pages (~400 employees, ~14 kB)
BLOCK_BYTES = 16_000  # a block read by rows: records up to this size, as fastavro writes


def _values(part: Part) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{} as {}").format(c.avro_value(), sql.Identifier(c.name)) for c in part.columns
    )


def _record(part: Part) -> sql.Composable:
    return sql.SQL(" || ").join(c.avro_encoded() for c in part.columns)


def _block_query(part: Part) -> sql.Composed:
    """COPY of the part's rows as Avro blocks, encoded in the database
    (procedures/055): a row (records, their bytes) for each BLOCK_PAGES
    pages that hold any, read by TID range."""
    end = (
        sql.SQL("(select pg_relation_size({}) / current_setting('block_size')::int)").format(
            sql.Literal(part.table)
        )
        if part.end_page is None
        else sql.Literal(part.end_page)
    )
    # the fence (offset 0) computes each value once: the inlined encoders
    # name their argument several times
    return sql.SQL(
        "copy (select b.records, b.data"
        " from generate_series({first}, {end} - 1, {step}) as p (page)"
        " cross join lateral (select count(*) as records, string_agg({record}, ''::bytea) as data"
        "  from (select {values} from {table}"
        "   where ctid >= ('(' || p.page || ',0)')::tid"
        "    and ctid < ('(' || least(p.page + {step}, {end}) || ',0)')::tid offset 0) as r"
        " ) as b where b.records > 0) to stdout (format binary)"
    ).format(
        first=sql.Literal(part.first_page), end=end, step=sql.Literal(BLOCK_PAGES),
        record=_record(part), values=_values(part), table=sql.Identifier(part.table),
    )  # fmt: skip


def _row_query(part: Part) -> sql.Composed:
    """COPY of the whole table's rows, each as its Avro record."""
    return sql.SQL(
        "copy (select {record} from (select {values} from {table} offset 0) as r)"
        " to stdout (format binary)"
    ).format(record=_record(part), values=_values(part), table=sql.Identifier(part.table))


def _encoded_blocks(conn: psycopg.Connection, part: Part) -> Iterator[tuple[int, bytes]]:
    """The part's blocks as (record count, records), encoded by the database."""
    # a plan's JIT compilation of the encoders costs more than running them
    conn.execute("set local jit = off")
    by_pages = part.first_page is not None
    with conn.cursor().copy(_block_query(part) if by_pages else _row_query(part)) as copy:
        if by_pages:
            copy.set_types(["int8", "bytea"])
            yield from copy.rows()
            return
        copy.set_types(["bytea"])
        block: list[bytes] = []
        size = 0
        for (record,) in copy.rows():
            block.append(record)
            size += len(record)
            if size >= BLOCK_BYTES:
                yield len(block), b"".join(block)
                block, size = [], 0
        if block:
            yield len(block), b"".join(block)


def _avro_long(n: int) -> bytes:
    """n as Avro writes a long (a block's record count and size)."""
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while z > 127:
        out.append(z & 127 | 128)
        z >>= 7
    out.append(z)
    return bytes(out)


def _snappy(data: bytes) -> bytes:
    """Avro's snappy block: the raw compressed bytes, then the CRC-32 of the data."""
    return bytes(cramjam.snappy.compress_raw(data)) + struct.pack(">I", zlib.crc32(data))


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    # deflate at level 1: 20% faster than the default level, and no larger here
    "deflate": lambda data: zlib.compress(data, 1, wbits=-15),
    "snappy": _snappy,
    "null": bytes,
}
CODECS = tuple(COMPRESS)


def _writer_args(part: Part) -> dict:
    """fastavro's arguments for a file's header."""
    schema = fastavro.parse_schema(avro_schema(part.table, list(part.columns)))
    return {"schema": schema, "codec": part.codec, "sync_marker": part.sync_marker}


def _framed_blocks(conn: psycopg.Connection, part: Part) -> Iterator[bytes]:
    """The part's Avro blocks as the file holds them: each its record count,
    its size, its records compressed by the file's codec, and the file's
    sync marker."""
    compress = COMPRESS[part.codec]
    for records, data in _encoded_blocks(conn, part):
        packed = compress(data)
        yield b"".join((_avro_long(records), _avro_long(len(packed)), packed, part.sync_marker))


def encode(conn: psycopg.Connection, part: Part) -> bytes:
    """The part's blocks, without the header a file starts with (a worker's task)."""
    return b"".join(_framed_blocks(conn, part))


# -- worker processes ------------------------------------------------------------------


def _parts(conn: psycopg.Connection, table: str, template: Part) -> list[Part]:
    pages = conn.execute(
        "select pg_relation_size(%s) / current_setting('block_size')::int", (table,)
    ).fetchone()[0]
    starts: list[int | None] = list(range(0, pages, PAGES_PER_PART)) or [None]
    ends: list[int | None] = [*starts[1:], None]  # the last part reads to the end
    return [
        Part(template.table, template.columns, template.codec, template.sync_marker, s, e)
        for s, e in zip(starts, ends, strict=True)
    ]


def _workers(parts: list[Part]) -> int:
    """Worker processes a table's parts get: a core each but this process's."""
    return min(len(parts), os.cpu_count() or 1) - 1


def _snapshot_orders(conn: psycopg.Connection) -> tuple[str, str, int]:
    """What a session needs to join the backup's snapshot (join_snapshot)."""
    snapshot = conn.execute("select pg_export_snapshot()").fetchone()[0]
    lock_ms = conn.execute("select current_setting('lock_timeout')").fetchone()[0]
    conninfo = make_conninfo(conn.info.dsn, password=conn.info.password or None)
    return conninfo, snapshot, _milliseconds(lock_ms)


def join_snapshot(conninfo: str, snapshot: str, lock_ms: int) -> psycopg.Connection:
    """A session that reads what the backup's transaction reads. It ends by
    itself if it sits in its transaction for IDLE_MS (its process gone, say):
    it holds the backup's snapshot and table locks."""
    idle = f"-c idle_in_transaction_session_timeout={IDLE_MS}"
    conn = psycopg.connect(
        conninfo, application_name=APPLICATION_NAME, options=f"-c lock_timeout={lock_ms} {idle}"
    )
    conn.execute("set transaction isolation level repeatable read, read only")
    conn.execute(sql.SQL("set transaction snapshot {}").format(snapshot))
    return conn


def _blocks(
    conn: psycopg.Connection, parts: list[Part], orders: tuple[str, str, int]
) -> Iterator[bytes]:
    """Each part's blocks, in order, for a table of several parts (_workers):
    worker processes read some in the backup's snapshot (`orders`) and this
    process the others on `conn` (every `workers + 1`-th), so one process
    fewer holds Python and psycopg in memory (a worker is ~45 MB)."""
    workers = _workers(parts)
    try:
        with worker_processes([("encode", *orders)] * workers) as pool:
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
    """The table's file: its header (the row count and checksum that
    backup_record computes and records) and its blocks."""
    columns = tuple(table_columns(conn, table))
    template = Part(table, columns, codec, os.urandom(16), 0, None)
    parts = _parts(conn, table, template)

    def recorded() -> tuple[int, str]:
        return conn.execute(
            "select * from backup_record(%s, %s, %s)", (set_name, table, path.name)
        ).fetchone()

    def header(rows: int, checksum: str) -> bytes:
        metadata = {
            f"{store.META}table": table,
            f"{store.META}row_count": str(rows),
            f"{store.META}checksum": checksum,
            f"{store.META}created_at": datetime.now(UTC).isoformat(),
            f"{store.META}schema_version": version,
            f"{store.META}set": set_name,
            f"{store.META}columns": json.dumps([c.as_list() for c in columns]),
        }
        out = io.BytesIO()
        fastavro.writer(out, records=[], metadata=metadata, **_writer_args(template))
        return out.getvalue()

    with store.partial_file(path) as f:
        if _workers(parts) < 1:
            f.write(header(*recorded()))
            for part in parts:
                for block in _framed_blocks(conn, part):
                    f.write(block)
        else:
            _write_while_recording(conn, parts, f, path.parent, recorded, header)


def _write_while_recording(
    conn: psycopg.Connection,
    parts: list[Part],
    f: BinaryIO,
    spool_dir: Path,
    recorded: Callable[[], tuple[int, str]],
    header: Callable[[int, str], bytes],
) -> None:
    """The checksum (a pass over the table, ~1.2 s a million employees)
    runs on `conn` in a thread while the parts are encoded by the workers
    and by a second session of this process in the same snapshot. The
    header needs the checksum: blocks that come before it wait in an
    unnamed temporary file beside the backup."""
    orders = _snapshot_orders(conn)
    with (
        join_snapshot(*orders) as mine,
        ThreadPoolExecutor(1, thread_name_prefix="backup checksum") as thread,
        tempfile.TemporaryFile(dir=spool_dir) as spool,
    ):
        counted = thread.submit(recorded)  # conn is the thread's until it is done
        out: BinaryIO = spool
        for block in _blocks(mine, parts, orders):
            if out is spool and counted.done():
                out = _after_header(f, header(*counted.result()), spool)
            out.write(block)
        if out is spool:
            _after_header(f, header(*counted.result()), spool)


def _after_header(f: BinaryIO, header: bytes, spool: BinaryIO) -> BinaryIO:
    """Write the header, then the blocks spooled so far; f from now on."""
    f.write(header)
    spool.seek(0)
    shutil.copyfileobj(spool, f, 1 << 20)
    return f


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
            store.writing(backup_dir) as directory,
            operation(conn, "dataarch backup"),
            _no_restore_meanwhile(conn, ordered, waiting),
        ):
            _write_set(conn, ordered, paths, name, backup_dir, codec)
            written = BackupSet(name, [store.read_info(p) for p in paths])
            if keep is not None or keep_days is not None:
                if directory.alone():
                    written.pruned = store.prune(backup_dir, keep, keep_days, protect=name)
                else:
                    written.pruning_deferred = True
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
