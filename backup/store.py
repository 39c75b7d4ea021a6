"""Backup files on disk.

    <dir>/<table>/<table>-<set>.avro    one table's rows, header and all
    <dir>/sets/<set>.json                the manifest of one backup set

A set is what one backup command wrote: one file per table, all read from
one snapshot, named after the set (its UTC creation time). It is full (every
table a backup holds) or partial (some of them), and numbered by the
database in the order sets were made (backup_set_begin): "newest" is the
highest number, never a clock's say, and retention removes whole sets.
Files are written under hidden `.partial` names and renamed only once every
file of the set is complete; the manifest is written last, so a set with a
manifest is whole, and a failure removes every file of the set. A backup
holds a shared lock on the directory's `.lock` while it writes; partial
files of a run that died are removed by the next one that finds no other
running. Anything in the directory that is not a regular file (a FIFO, a
folder named like a backup) is ignored, with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import fastavro

from dataarch.errors import Failure

META = "dataarch."  # prefix of our keys in the Avro header
SETS = "sets"
REMOVING = "removing"  # a manifest's mark: retention is removing the set
LOCK = ".lock"  # held shared by every backup that writes here
# What a full set holds: _backup_tables() of procedures/060 (a test checks
# they agree), read here without a database; sets of releases before
# numbered sets name no kind, and are full when they hold all of it.
FULL_SET = frozenset({
    "departments", "jobs", "employees",
    "ingest_batches", "ingest_errors", "migrated_files", "idempotency_keys",
})  # fmt: skip
FUTURE_SLACK = timedelta(minutes=5)  # a set dated further ahead had a clock running fast
log = logging.getLogger("dataarch.backup")
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
    files: dict[str, dict[str, object]]  # table -> file, rows, sha256, bytes
    missing: list[str] = field(default_factory=list)  # tables whose file is gone
    number: int | None = None  # its place in the order sets were made; None: an earlier release's
    kind: str = ""  # "full" or "partial"
    about: dict[str, object] = field(default_factory=dict)  # what else the manifest records

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def full(self) -> bool:
        return self.kind == "full" if self.kind else set(self.files) >= FULL_SET

    @property
    def order(self) -> tuple:
        """How sets sort, oldest first: by number; an earlier release's
        (unnumbered) before every numbered one, by their time."""
        return (self.number is not None, self.number or 0, self.created_at)

    @property
    def in_the_future(self) -> bool:
        """Dated ahead of now: made while a clock ran fast (its number still
        places it where it belongs)."""
        return _when(self.created_at) > datetime.now(UTC) + FUTURE_SLACK

    def as_dict(self) -> dict[str, object]:
        return {
            "set": self.name, "number": self.number, "kind": "full" if self.full else "partial",
            "created_at": self.created_at, "complete": self.complete, "missing": self.missing,
            "in_the_future": self.in_the_future, **self.about, "files": self.files,
        }  # fmt: skip


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
    document = {"set": info.name, "number": info.number, "kind": info.kind,
                "created_at": info.created_at, **info.about, "files": info.files}  # fmt: skip
    with partial_file(path) as f:
        f.write(json.dumps(document, indent=2).encode())
    promote([path])
    return path


@dataclass
class Writing:
    """A backup's hold on the directory's lock (shared while it writes)."""

    fd: int

    def alone(self) -> bool:
        """Whether no other backup is writing here now; if so, the lock is
        this one's alone until it ends, and no other backup starts. Only
        then may retention run: another backup's files, renamed into place
        before its manifest lists them, would look like files no set lists."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@contextmanager
def writing(backup_dir: Path) -> Iterator[Writing]:
    """Hold the directory's lock shared while a backup writes there; first,
    when no other backup is running, remove the partial files of runs that
    died (a crash, kill -9) before they could."""
    try:
        make_dirs(backup_dir)
        fd = os.open(backup_dir / LOCK, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise storage_error("write the backup", exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for leftover in _partials(backup_dir):
                log.warning("removing %s: left by a backup that did not finish", leftover)
                leftover.unlink(missing_ok=True)
        except BlockingIOError:
            pass  # another backup is writing: its partial files are its own
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield Writing(fd)
    finally:
        os.close(fd)  # releases the lock


def _partials(backup_dir: Path) -> list[Path]:
    folders = [p for p in backup_dir.iterdir() if p.is_dir()] if backup_dir.is_dir() else []
    return [p for folder in folders for p in folder.glob(".*.partial") if p.is_file()]


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


def _regular(paths: Iterator[Path]) -> list[Path]:
    """The regular files among `paths`; anything else (a FIFO would block a
    reader forever, a folder cannot be read or removed as a file) is
    ignored, with a warning."""
    found = []
    for path in paths:
        if path.is_file():
            found.append(path)
        else:
            log.warning("ignoring %s: not a regular file", path)
    return sorted(found)


def backup_files(backup_dir: Path, table: str) -> list[Path]:
    """Files of a table's backups (complete ones: no partials), by name."""
    folder = backup_dir / table
    if not folder.is_dir():
        return []
    return _regular(p for p in folder.glob(f"{table}-*.avro") if not p.name.startswith("."))


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def created(info: BackupInfo) -> datetime:
    """When a backup was made, as far as anyone can tell."""
    return _when(info.created_at)


def list_backups(backup_dir: Path, table: str) -> list[BackupInfo]:
    """A table's backups, oldest first: in the order of their sets, those no
    set lists (an earlier release's) first, by time; unreadable ones included."""
    place = {
        str(f["file"]).rsplit("/", 1)[-1]: found.order
        for found in list_sets(backup_dir)
        for f in found.files.values()
    }
    infos = [read_info(p) for p in backup_files(backup_dir, table)]
    return sorted(infos, key=lambda i: (i.file in place, place.get(i.file, ()), created(i)))


def newest(backup_dir: Path, table: str) -> BackupInfo | None:
    readable = [b for b in list_backups(backup_dir, table) if not b.problem]
    return readable[-1] if readable else None


def list_sets(backup_dir: Path, removing: bool = False) -> list[SetInfo]:
    """Every set with a manifest, oldest first (by number), marked incomplete
    when a file is gone; a set retention began to remove only with
    `removing` (prune finishes it)."""
    folder = backup_dir / SETS
    sets = []
    for path in _regular(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            files = data["files"]
            missing = [t for t, f in files.items() if not (backup_dir / str(f["file"])).is_file()]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a manifest of ours
        about = {k: v for k, v in data.items()
                 if k not in ("set", "number", "kind", "created_at", "files")}  # fmt: skip
        if about.get(REMOVING) and not removing:
            continue
        sets.append(SetInfo(data["set"], data.get("created_at", ""), files, missing,
                            data.get("number"), data.get("kind", ""), about))  # fmt: skip
    return sorted(sets, key=lambda s: s.order)


def highest_number(backup_dir: Path) -> int:
    """The highest set number the directory holds (0 when none): a new set
    is numbered above it, whichever database makes it."""
    return max((s.number or 0 for s in list_sets(backup_dir)), default=0)


def find_set(backup_dir: Path, name: str | None) -> SetInfo:
    """The named set, or the newest complete full one."""
    sets = list_sets(backup_dir)
    if name is None:
        full = [s for s in sets if s.complete and s.full]
        if not full:
            partial = " (only partial sets: name one with --set)" if sets else ""
            raise BackupError(
                f"no complete full backup set in {backup_dir}{partial};"
                " `dataarch backups` lists them"
            )
        return full[-1]
    for found in sets:
        if found.name == name:
            return found
    raise BackupError(f"no backup set named {name} in {backup_dir}")


# -- retention ------------------------------------------------------------------------


def prune(
    backup_dir: Path,
    keep: int | None = None,
    keep_days: float | None = None,
    protect: str | None = None,
) -> list[Path]:
    """Remove whole sets, never a file a kept set needs: beyond the newest
    `keep` full sets, and of each table beyond its newest `keep` partial
    sets; and sets made more than `keep_days` ago. Never the set named
    `protect` (the one just written), nor the newest complete full set by
    age alone. Files no set lists (an earlier release's) count as partial
    sets of their table. Returns what was removed."""
    sets = list_sets(backup_dir, removing=True)
    # what a removal killed half-way left (kill -9): finished first
    doomed = {s.name: _set_paths(backup_dir, s) for s in sets if s.about.get(REMOVING)}
    sets = [s for s in sets if not s.about.get(REMOVING)]
    if keep is not None:
        full = [s for s in sets if s.full]
        for found in full[: max(len(full) - keep, 0)]:
            doomed[found.name] = _set_paths(backup_dir, found)
        partial = _partial_sets(backup_dir, sets).values()
        kept = {name for entries in partial for name, _ in entries[-keep:]}
        for entries in partial:
            doomed.update((name, paths) for name, paths in entries if name not in kept)
    if keep_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=keep_days)
        newest_full = [s.name for s in sets if s.full and s.complete][-1:]
        for found in sets:
            if _when(found.created_at) < cutoff and found.name not in newest_full:
                doomed[found.name] = _set_paths(backup_dir, found)
        for partial in _partial_sets(backup_dir, sets).values():
            for name, paths in partial:
                if name.startswith("file:") and _mtime_of(paths[0]) < cutoff:
                    doomed[name] = paths
    doomed.pop(protect or "", None)
    removed = []
    for name, paths in doomed.items():
        _mark_removing(backup_dir, name, sets)
        for path in paths:
            if path.is_file():
                path.unlink()
                removed.append(path)
    return sorted(removed)


def _mark_removing(backup_dir: Path, name: str, sets: list[SetInfo]) -> None:
    """Before a set's first file goes, its manifest says it is being removed
    (written whole, then renamed): a removal killed half-way leaves a set
    nobody restores or verifies, which the next prune finishes, never a set
    that lists files it lacks."""
    found = next((s for s in sets if s.name == name), None)
    if found is not None:
        write_manifest(backup_dir, replace(found, about={**found.about, REMOVING: True}))


def _set_paths(backup_dir: Path, found: SetInfo) -> list[Path]:
    """A set's files, its manifest last (the set stays listed until all else is gone)."""
    files = [backup_dir / str(f["file"]) for f in found.files.values()]
    return [*files, manifest_path(backup_dir, found.name)]


def _partial_sets(backup_dir: Path, sets: list[SetInfo]) -> dict[str, list[tuple[str, list]]]:
    """Per table, oldest first: (name, paths) of the partial sets holding it,
    after the files of that table no set lists ("file:" names)."""
    listed = {backup_dir / str(f["file"]) for s in sets for f in s.files.values()}
    tables = {t for s in sets for t in s.files} | {
        p.name for p in (backup_dir.iterdir() if backup_dir.is_dir() else []) if p.is_dir()
    } - {SETS}
    found: dict[str, list[tuple[str, list]]] = {}
    for table in sorted(tables):
        loose = sorted((p for p in backup_files(backup_dir, table) if p not in listed),
                       key=_mtime_of)  # fmt: skip
        found[table] = [(f"file:{p}", [p]) for p in loose] + [
            (s.name, _set_paths(backup_dir, s)) for s in sets if not s.full and table in s.files
        ]
    return found


def _mtime_of(path: Path) -> datetime:
    return _when(_mtime(path))
