"""Verify backups without restoring them, as `pgBackRest verify` does: for a
file of a set, its size and SHA-256 against the set's manifest; every record
decoded, and counted against the header's row count; and, when a database
is at hand, the records loaded into a temporary table of the columns the
header records and their checksum compared with the header's (the checksum
is PostgreSQL's hashtextextended of each row's text, so only a database
computes it). Without a database all but that last check are made, and the
answer says so. Nothing outside the session's own temporary table changes."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from backup import store
from backup.columns import TYPES, Column, table_columns
from backup.restore import (
    RestoreError,
    copy_file_rows,
    open_reader,
    record_rows,
    require_schema,
)


@dataclass(frozen=True)
class Verified:
    path: Path
    rows: int
    problem: str = ""  # empty when the file holds what its header says
    checksum_checked: bool = True  # False: no database was at hand to compute it

    @property
    def ok(self) -> bool:
        return not self.problem


def _header_columns(conn: psycopg.Connection | None, meta: dict, table: str) -> list[Column]:
    """The columns the header records; files of earlier releases name only the
    table, whose columns this database then supplies (without one, the
    file's own field names do)."""
    if f"{store.META}columns" not in meta:
        if conn is None:
            return [Column(n, "text") for n in json.loads(meta["avro.schema"]).get("fields", [])]
        return table_columns(conn, table)
    columns = [Column(n, t, bool(null)) for n, t, null in json.loads(meta[f"{store.META}columns"])]
    if unknown := [c.pg_type for c in columns if c.pg_type not in TYPES]:
        raise RestoreError(f"unknown column type {unknown[0]!r} in the header")
    return columns


def verify_file(
    conn: psycopg.Connection | None, path: Path, manifest: dict | None = None
) -> Verified:
    """Read all of one backup file and check it against its header (and
    manifest); its checksum too when there is a database (conn)."""
    try:
        if problem := store.too_open(path):
            return Verified(path, -1, problem)
        if manifest and path.stat().st_size != manifest.get("bytes"):
            return Verified(path, -1, f"size {path.stat().st_size} bytes, the set recorded"
                                      f" {manifest.get('bytes')}")  # fmt: skip
        if manifest and store.sha256_of(path) != manifest.get("sha256"):
            return Verified(path, -1, "SHA-256 differs from the one the set recorded")
        with ExitStack() as files:
            if conn is not None:
                files.enter_context(conn.transaction(force_rollback=True))
            reader = open_reader(path, files)
            meta = reader.metadata
            if f"{store.META}row_count" not in meta or f"{store.META}checksum" not in meta:
                return Verified(path, -1, "not a dataarch backup (no row count or checksum)")
            columns = _header_columns(conn, meta, meta.get(f"{store.META}table", ""))
            if conn is None:
                rows, checksum = sum(1 for _ in record_rows(path, columns)), None
            else:
                rows, checksum = _load_and_sum(conn, path, columns)
    except RestoreError as exc:
        return Verified(path, -1, str(exc))
    except OSError as exc:
        return Verified(path, -1, f"cannot read: {exc.strerror}")
    expected_rows, expected = int(meta[f"{store.META}row_count"]), meta[f"{store.META}checksum"]
    if rows != expected_rows:
        return Verified(path, rows, f"holds {rows} rows; its header records {expected_rows}")
    if checksum is None:
        return Verified(path, rows, checksum_checked=False)
    if checksum != store.unsigned(expected):
        return Verified(
            path, rows, f"checksum {checksum}; its header records {store.unsigned(expected)}"
        )
    return Verified(path, rows)


def _load_and_sum(conn: psycopg.Connection, path: Path, columns: list[Column]) -> tuple[int, str]:
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.pg_type), sql.SQL("" if c.nullable else " not null")
        )
        for c in columns
    )
    conn.execute(sql.SQL("create temp table verify_rows ({}) on commit drop").format(definition))
    copy_file_rows(conn, sql.Identifier("verify_rows"), path, columns)
    return conn.execute("select * from relation_checksum('pg_temp.verify_rows')").fetchone()


def verify(conn: psycopg.Connection | None, backup_dir: Path, target: str | None) -> list[Verified]:
    """A file (a path), a set (its name), or, by default, every backup there
    is; with no database (conn None), all but the checksums."""
    if conn is not None:
        require_schema(conn, "verify (it computes checksums)")
    if target and Path(target).is_file():
        return [verify_file(conn, Path(target))]
    sets = store.list_sets(backup_dir)
    if target:
        sets = [s for s in sets if s.name == target]
        if not sets:
            raise RestoreError(f"{target} is neither a backup file nor a set in {backup_dir}")
    results, seen = [], set()
    for directory in _directories(backup_dir):
        if problem := store.too_open(directory):
            results.append(Verified(directory, -1, problem))
    for found in sets:
        for table, entry in found.files.items():
            path = backup_dir / str(entry["file"])
            seen.add(path)
            if table in found.missing:
                results.append(Verified(path, -1, f"missing: set {found.name} lists it"))
            else:
                results.append(verify_file(conn, path, entry))
    if not target:  # files no manifest lists: older releases wrote no sets
        for folder in (
            sorted(p for p in backup_dir.iterdir() if p.is_dir()) if backup_dir.is_dir() else []
        ):
            for path in store.backup_files(backup_dir, folder.name):
                if path not in seen:
                    results.append(verify_file(conn, path))
    return results


def _directories(backup_dir: Path) -> list[Path]:
    """The backup directory and its folders (one per table, and sets/)."""
    if not backup_dir.is_dir():
        return []
    return [backup_dir, *sorted(p for p in backup_dir.iterdir() if p.is_dir())]
