"""Restore: one transaction that locks the table, loads the file into a
staging table with COPY, lets restore_finish() replace the rows and compare
count and checksum, and commits only if every constraint still holds.
Anything wrong rolls back: the table is exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fastavro
import psycopg
from psycopg import sql

from backup import store
from backup.columns import Column, avro_schema, table_columns


class RestoreError(RuntimeError):
    """The restore did not happen; the message names the problem."""


def _check_file(reader: fastavro.reader, path: Path, table: str, columns: list[Column]) -> None:
    found = reader.metadata.get(f"{store.META}table")
    if found != table:
        raise RestoreError(
            f"{path.name} is a backup of {found or 'no dataarch table'}, not {table}"
        )
    expected = avro_schema(table, columns)["fields"]
    actual = [{"name": f["name"], "type": f["type"]} for f in reader.writer_schema["fields"]]
    if actual != expected:
        described = ", ".join(f"{f['name']}:{f['type']}" for f in actual)
        wanted = ", ".join(f"{f['name']}:{f['type']}" for f in expected)
        raise RestoreError(f"{path.name} has columns ({described}); {table} has ({wanted})")
    for key in ("row_count", "checksum"):
        if f"{store.META}{key}" not in reader.metadata:
            raise RestoreError(f"{path.name} lacks the {key} a dataarch backup records")


def _rows(reader: fastavro.reader, path: Path, names: list[str]) -> Iterator[tuple]:
    done = 0
    try:
        for record in reader:
            yield tuple(record[n] for n in names)
            done += 1
    except Exception as exc:  # fastavro raises many types on damaged data
        raise RestoreError(f"{path.name} is damaged after record {done}: {exc}") from exc


def restore_table(conn: psycopg.Connection, table: str, path: Path) -> int:
    """Replace the rows of `table` with those of the backup at `path`; return the count."""
    columns = table_columns(conn, table)
    names = [c.name for c in columns]
    try:
        f = path.open("rb")
    except OSError as exc:
        raise RestoreError(f"cannot open {path}: {exc.strerror}") from exc
    with f:
        try:
            reader = fastavro.reader(f)
        except Exception as exc:
            raise RestoreError(f"{path.name} is not an Avro backup file: {exc}") from exc
        _check_file(reader, path, table, columns)
        rows = int(reader.metadata[f"{store.META}row_count"])
        checksum = reader.metadata[f"{store.META}checksum"]
        try:
            with conn.transaction():
                staging = conn.execute("select restore_begin(%s)", (table,)).fetchone()[0]
                query = sql.SQL("copy {} ({}) from stdin (format binary)").format(
                    sql.Identifier(staging), sql.SQL(", ").join(map(sql.Identifier, names))
                )
                with conn.cursor().copy(query) as copy:
                    copy.set_types([c.copy_type for c in columns])
                    for row in _rows(reader, path, names):
                        copy.write_row(row)
                return conn.execute(
                    "select restore_finish(%s, %s, %s)", (table, rows, checksum)
                ).fetchone()[0]
        except psycopg.errors.ForeignKeyViolation as exc:
            raise RestoreError(
                f"restoring {table} from {path.name} would break a reference"
                f" ({exc.diag.constraint_name}): {exc.diag.message_detail}; nothing changed"
            ) from exc
        except psycopg.errors.IntegrityError as exc:
            raise RestoreError(
                f"{path.name} holds a row that breaks {exc.diag.constraint_name or 'a constraint'}"
                f" of {table}: {exc.diag.message_detail or exc.diag.message_primary};"
                " nothing changed"
            ) from exc
        except psycopg.Error as exc:
            if exc.sqlstate in ("DAT06", "22003", "22021", "22P02"):
                raise RestoreError(f"{exc.diag.message_primary}; nothing changed") from exc
            raise
