"""Backup: rows stream from COPY ... TO STDOUT into the fastavro writer, one
block at a time, so memory stays flat however large the table is. Several
tables are read in one REPEATABLE READ snapshot, so the files agree with each
other (no employee points at a department the departments file lacks)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import psycopg
from psycopg import sql

from backup import store
from backup.columns import Column, avro_schema, table_columns
from dataarch.installer import schema_version

CODECS = ("deflate", "snappy", "null")


def _select_list(columns: list[Column]) -> sql.Composable:
    """Timestamps leave the database as epoch microseconds: what Avro stores."""
    parts = []
    for c in columns:
        ident = sql.Identifier(c.name)
        if c.pg_type == "timestamp with time zone":
            parts.append(sql.SQL("(extract(epoch from {}) * 1000000)::int8").format(ident))
        else:
            parts.append(ident)
    return sql.SQL(", ").join(parts)


def _records(conn: psycopg.Connection, table: str, columns: list[Column]) -> Iterator[dict]:
    query = sql.SQL("copy (select {} from {}) to stdout (format binary)").format(
        _select_list(columns), sql.Identifier(table)
    )
    names = [c.name for c in columns]
    copy_types = [
        "int8" if c.pg_type == "timestamp with time zone" else c.copy_type for c in columns
    ]
    with conn.cursor().copy(query) as copy:
        copy.set_types(copy_types)
        for row in copy.rows():
            yield dict(zip(names, row, strict=True))


def _dump_table(
    conn: psycopg.Connection, table: str, backup_dir: Path, codec: str, version: str
) -> store.BackupInfo:
    columns = table_columns(conn, table)
    rows, checksum = conn.execute("select * from table_checksum(%s)", (table,)).fetchone()
    path = store.new_path(backup_dir, table)
    metadata = {
        f"{store.META}table": table,
        f"{store.META}row_count": str(rows),
        f"{store.META}checksum": checksum,
        f"{store.META}created_at": datetime.now(UTC).isoformat(),
        f"{store.META}schema_version": version,
    }
    schema = fastavro.parse_schema(avro_schema(table, columns))
    with store.atomic_file(path) as f:
        fastavro.writer(f, schema, _records(conn, table, columns), codec=codec, metadata=metadata)
    return store.read_info(path)


def backup_tables(
    conn: psycopg.Connection,
    tables: Iterable[str],
    backup_dir: Path,
    codec: str = "deflate",
    keep: int | None = None,
) -> list[store.BackupInfo]:
    """Write one Avro file per table, all from one snapshot; prune to `keep` if given."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    if keep is not None and keep < 1:
        raise ValueError("--keep must be at least 1")
    previous = conn.isolation_level, conn.read_only
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            version = schema_version(conn)
            written = [_dump_table(conn, t, backup_dir, codec, version) for t in tables]
    finally:
        conn.isolation_level, conn.read_only = previous
    if keep is not None:
        for info in written:
            store.prune(backup_dir, info.table, keep)
    return written
