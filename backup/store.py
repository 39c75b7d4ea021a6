"""Backup files on disk: <dir>/<table>/<table>-<UTC timestamp>.avro, written
under a hidden temporary name, fsynced, then renamed, so a crash never leaves
a file that looks complete."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import fastavro

META = "dataarch."  # prefix of our keys in the Avro header


@dataclass(frozen=True)
class BackupInfo:
    table: str
    file: str
    path: str
    rows: int
    created_at: str
    bytes: int
    codec: str
    checksum: str
    schema_version: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def new_path(backup_dir: Path, table: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return backup_dir / table / f"{table}-{stamp}.avro"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        partial.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        partial.unlink(missing_ok=True)


def read_info(path: Path) -> BackupInfo:
    """The header of a backup file (no data block is read)."""
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        meta = reader.metadata
        return BackupInfo(
            table=meta.get(f"{META}table", ""),
            file=path.name,
            path=str(path),
            rows=int(meta.get(f"{META}row_count", -1)),
            created_at=meta.get(f"{META}created_at", ""),
            bytes=path.stat().st_size,
            codec=reader.codec,
            checksum=meta.get(f"{META}checksum", ""),
            schema_version=meta.get(f"{META}schema_version", ""),
        )


def backup_files(backup_dir: Path, table: str) -> list[Path]:
    """Complete backups of a table, oldest first (names sort by time)."""
    folder = backup_dir / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{table}-*.avro") if not p.name.startswith("."))


def list_backups(backup_dir: Path, table: str) -> list[BackupInfo]:
    return [read_info(p) for p in backup_files(backup_dir, table)]


def prune(backup_dir: Path, table: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups of a table; return what was deleted."""
    files = backup_files(backup_dir, table)
    doomed = files[: max(len(files) - keep, 0)]
    for path in doomed:
        path.unlink()
    return doomed
