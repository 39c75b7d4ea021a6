"""Historical CSV migration: stream each file's raw lines into the database
with COPY, then let ingest_csv_lines validate and load them with the same core
as ingest_batch. Python only moves bytes and prints the summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

# Dependency order, and the file names each table is read from (the seed's
# API copy calls the employees file employees.csv).
TABLE_FILES = {
    "departments": ("departments.csv",),
    "jobs": ("jobs.csv",),
    "employees": ("hired_employees.csv", "employees.csv"),
}
# Each line becomes one raw text value: CSV mode never interprets backslashes,
# and \x01 / \x02 do not occur in text, so no line is split or unquoted here.
COPY_RAW_LINES = (
    "copy csv_lines (raw_line) from stdin"
    " with (format csv, delimiter E'\\x01', quote E'\\x02', escape E'\\x02')"
)
_CHUNK = 1 << 20


class MigrationError(RuntimeError):
    """A file could not be migrated at all; nothing of it was loaded."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_files(csv_dir: Path) -> Iterator[tuple[str, Path]]:
    """(table, file) pairs present in csv_dir, in dependency order."""
    if not csv_dir.is_dir():
        raise MigrationError(f"{csv_dir} is not a directory")
    for table, names in TABLE_FILES.items():
        for name in names:
            if (csv_dir / name).is_file():
                yield table, csv_dir / name
                break


def migrate_file(
    conn: psycopg.Connection, table: str, path: Path, progress: Callable[[int], None] | None = None
) -> dict:
    """Load one file in one transaction; return ingest_csv_lines' summary."""
    digest = sha256_of(path)
    with conn.transaction():
        conn.execute(
            "create temp table csv_lines ("
            " line_number bigint generated always as identity primary key, raw_line text"
            ") on commit drop"
        )
        try:
            with conn.cursor().copy(COPY_RAW_LINES) as copy, path.open("rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    copy.write(chunk)
                    if progress:
                        progress(len(chunk))
        except (psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat) as exc:
            raise MigrationError(
                f"{path.name} is not a UTF-8 text CSV file ({exc.diag.message_primary});"
                " nothing was loaded from it"
            ) from exc
        try:
            row = conn.execute(
                "select ingest_csv_lines(%s, %s, %s)", (table, path.name, digest)
            ).fetchone()
        except psycopg.Error as exc:
            if exc.sqlstate == "DAT04":
                raise MigrationError(f"{exc.diag.message_primary}; nothing was loaded") from exc
            raise
    assert row is not None
    return row[0]


def describe(summary: dict) -> str:
    """One line a person reads: what happened to the file."""
    if summary["status"] == "already_migrated":
        return (
            f"{summary['file']} -> {summary['table']}: already migrated"
            f" (batch {summary['batch_id']}, {summary['migrated_at']}); skipped"
        )
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_reason"].items()))
    return (
        f"{summary['file']} -> {summary['table']}: {summary['lines']} lines,"
        f" {summary['inserted']} inserted, {summary['rejected']} rejected"
        + (f" ({reasons})" if reasons else "")
        + (f", {summary['blank']} blank skipped" if summary["blank"] else "")
        + f" [batch {summary['batch_id']}]"
    )
