"""Backup files on disk.

    <dir>/<table>/<table>-<set>.avro    one table's rows, header and all
    <dir>/sets/<set>.json                the manifest of one backup set

A set is what one backup command wrote: one file per table, all read from
one snapshot, named after the set (its UTC creation time). Files are written
under hidden `.partial` names and renamed only once every file of the set
is complete; the manifest is written last, so a set with a manifest is
whole, and a failure removes every file of the set.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import fastavro

from dataarch.errors import Failure

META = "dataarch."  # prefix of our keys in the Avro header
SETS = "sets"
# Backups hold every employee's name: readable by their owner (and group)
# only, as pgBackRest makes its repository. Set on creation, whatever the
# umask; `backup verify` reports anything wider.
FILE_MODE, DIR_MODE = 0o640, 0o750
_OTHERS = 0o027  # group write, and anything for others
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class BackupError(Failure):
    """A backup, listing or restore could not be done; the message says why."""


class StorageError(BackupError):
    """The backup directory could not be written or read (permissions, space)."""

    def __init__(self, message: str, reason: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        self.reason = reason  # the cause without the path, for answers to other hosts
        self.no_space = no_space


def storage_error(action: str, exc: OSError) -> StorageError:
    """One sentence for an OSError: what failed, where, and why, without a traceback."""
    no_space = exc.errno in _NO_SPACE
    why = "no space left" if no_space else (exc.strerror or str(exc)).lower()
    where = f" {exc.filename}" if exc.filename else ""
    return StorageError(f"cannot {action}{where}: {why}", why, no_space=no_space)


@dataclass(frozen=True)
class BackupInfo:
    """A backup file as its header describes it (see path_of for where it is)."""

    table: str
    file: str
    set: str
    rows: int
    created_at: str  # the header's, else the file's modification time
    bytes: int
    codec: str
    checksum: str
    schema_version: str
    problem: str = ""  # why the file cannot be read; empty for a readable backup

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def path_of(backup_dir: Path, info: BackupInfo) -> Path:
    return backup_dir / info.table / info.file


@dataclass(frozen=True)
class SetInfo:
    name: str
    created_at: str
    files: dict[str, dict[str, object]]  # table -> file, rows, checksum, sha256, bytes
    missing: list[str] = field(default_factory=list)  # tables whose file is gone

    @property
    def complete(self) -> bool:
        return not self.missing


def set_name() -> str:
    """A new set's name: its UTC creation time, which sorts as it was made."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def file_path(backup_dir: Path, table: str, set_name: str) -> Path:
    return backup_dir / table / f"{table}-{set_name}.avro"


def manifest_path(backup_dir: Path, name: str) -> Path:
    return backup_dir / SETS / f"{name}.json"


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(directory: Path) -> None:
    """`directory` and its missing parents, each DIR_MODE."""
    missing = [d for d in [directory, *directory.parents] if not d.exists()]
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        d.chmod(DIR_MODE)  # mkdir's mode is cut by the umask


def too_open(path: Path) -> str:
    """Why `path` is readable by more than its owner and group, or ""."""
    mode = path.stat().st_mode & 0o777
    if not mode & _OTHERS:
        return ""
    wanted = DIR_MODE if path.is_dir() else FILE_MODE
    return f"readable by other users (mode {mode:04o}): chmod {wanted:04o} {path}"


@contextmanager
def partial_file(path: Path) -> Iterator[BinaryIO]:
    """A file written under its hidden partial name (mode FILE_MODE) and
    fsynced; promote() renames it."""
    make_dirs(path.parent)
    fd = os.open(_partial(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # the umask cut O_CREAT's mode; an old partial kept its own
    with os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def promote(paths: list[Path]) -> None:
    """Give complete partial files their real names, then make the renames durable."""
    for path in paths:
        _partial(path).replace(path)
    for directory in {p.parent for p in paths}:
        _fsync_dir(directory)


def discard(paths: list[Path]) -> None:
    """Remove a failed set: its partial files and any already renamed."""
    for path in paths:
        _partial(path).unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def write_manifest(backup_dir: Path, info: SetInfo) -> Path:
    path = manifest_path(backup_dir, info.name)
    with partial_file(path) as f:
        f.write(json.dumps({"set": info.name, "created_at": info.created_at,
                            "files": info.files}, indent=2).encode())  # fmt: skip
    promote([path])
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- reading ------------------------------------------------------------------------


def read_info(path: Path) -> BackupInfo:
    """The header of a backup file (no data block is read); an unreadable file
    is described by its problem instead of raising."""
    table = path.parent.name  # each table's backups have a folder of their own
    try:
        stat = path.stat()
        with path.open("rb") as f:
            reader = fastavro.reader(f)
            meta, codec = reader.metadata, reader.codec
    except Exception as exc:  # fastavro raises many types on a damaged header
        return BackupInfo(
            table=table, file=path.name, set="", rows=-1, created_at=_mtime(path), bytes=0,
            codec="", checksum="", schema_version="",
            problem=f"unreadable: {getattr(exc, 'strerror', None) or exc}",
        )  # fmt: skip
    return BackupInfo(
        table=table,
        file=path.name,
        set=meta.get(f"{META}set", ""),
        rows=int(meta.get(f"{META}row_count", -1)),
        created_at=meta.get(f"{META}created_at") or _mtime(path),
        bytes=stat.st_size,
        codec=codec,
        checksum=unsigned(meta.get(f"{META}checksum", "")),
        schema_version=meta.get(f"{META}schema_version", ""),
        problem="" if meta.get(f"{META}table") == table else "not a dataarch backup of " + table,
    )


def _mtime(path: Path) -> str:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
    except OSError:
        return ""


def unsigned(checksum: str) -> str:
    """Files of earlier releases may record the checksum as a signed number."""
    return str(int(checksum) % 2**64) if checksum.lstrip("-").isdigit() else checksum


def backup_files(backup_dir: Path, table: str) -> list[Path]:
    """Files of a table's backups (complete ones: no partials), by name."""
    folder = backup_dir / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"{table}-*.avro") if not p.name.startswith("."))


def created(info: BackupInfo) -> datetime:
    """When a backup was made, as far as anyone can tell."""
    try:
        return datetime.fromisoformat(info.created_at)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def list_backups(backup_dir: Path, table: str) -> list[BackupInfo]:
    """A table's backups, oldest first by creation time; unreadable ones included."""
    return sorted((read_info(p) for p in backup_files(backup_dir, table)), key=created)


def newest(backup_dir: Path, table: str) -> BackupInfo | None:
    readable = [b for b in list_backups(backup_dir, table) if not b.problem]
    return readable[-1] if readable else None


def list_sets(backup_dir: Path) -> list[SetInfo]:
    """Every set with a manifest, oldest first, marked incomplete when a file is gone."""
    folder = backup_dir / SETS
    sets = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            files = data["files"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a manifest of ours
        missing = [t for t, f in files.items() if not (backup_dir / str(f["file"])).is_file()]
        sets.append(SetInfo(data["set"], data.get("created_at", ""), files, missing))
    return sets


def find_set(backup_dir: Path, name: str | None) -> SetInfo:
    """The named set, or the newest complete one."""
    sets = list_sets(backup_dir)
    if name is None:
        complete = [s for s in sets if s.complete]
        if not complete:
            raise BackupError(
                f"no complete backup set in {backup_dir}; `dataarch backups` lists them"
            )
        return complete[-1]
    for found in sets:
        if found.name == name:
            return found
    raise BackupError(f"no backup set named {name} in {backup_dir}")


# -- retention ------------------------------------------------------------------------


def prune(
    backup_dir: Path,
    table: str,
    keep: int | None = None,
    keep_days: float | None = None,
    protect: Path | None = None,
) -> list[Path]:
    """Delete a table's backups beyond the newest `keep` and older than
    `keep_days`, by creation time; never `protect` (the file just written,
    whatever its name or clock says). Returns what was deleted."""
    backups = list_backups(backup_dir, table)
    doomed: list[BackupInfo] = []
    if keep is not None:
        doomed += backups[: max(len(backups) - keep, 0)]
    if keep_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=keep_days)
        doomed += [b for b in backups if created(b) < cutoff]
    deleted = []
    for info in {b.file: b for b in doomed}.values():
        path = path_of(backup_dir, info)
        if protect is not None and path == protect:
            continue
        path.unlink(missing_ok=True)
        deleted.append(path)
    _drop_empty_sets(backup_dir)
    return sorted(deleted)


def _drop_empty_sets(backup_dir: Path) -> None:
    """A manifest whose files are all gone describes nothing: remove it."""
    for found in list_sets(backup_dir):
        if len(found.missing) == len(found.files):
            manifest_path(backup_dir, found.name).unlink(missing_ok=True)
