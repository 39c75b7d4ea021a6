"""Backups and restores over HTTP (admin scope). They run in a worker thread,
on a connection of the blocking pool, as the API's database role."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

from litestar import Controller, get, post
from litestar.exceptions import NotFoundException
from litestar.params import Body, QueryParameter

from api.problems import problem_responses
from api.schemas import TablePath
from api.state import AppSettings, BlockingPool, DataTables
from api.tables import known_table
from backup import BackupInfo, RestoreResult, backup_tables, list_backups, restore_table
from backup.store import backup_files, newest
from dataarch.logs import event
from dataarch.settings import Settings

log = logging.getLogger("dataarch.api")
CodecQuery = Annotated[Literal["deflate", "snappy", "null"], QueryParameter()]
KeepQuery = Annotated[
    int | None,
    QueryParameter(
        ge=1,
        le=100_000,
        description="keep the newest N full sets and, of each table, the newest N partial ones",
    ),  # fmt: skip
]
KeepDaysQuery = Annotated[
    float | None, QueryParameter(gt=0, le=100_000, description="delete those older than N days")
]


@dataclass
class RestoreRequest:
    file: str | None = None
    """A backup's file name as GET /tables/{table}/backups lists it; default: the newest."""
    dry_run: bool = False
    """Say what the restore would change, and change nothing."""


@dataclass
class BackupMade:
    set: str
    files: list[BackupInfo]
    pruned: list[str]
    pruning_deferred: bool  # another backup was writing: the next one with keep prunes


def _backup(blocking: BlockingPool, settings: Settings, tables: list[str] | None, codec: str,
            keep: int | None, keep_days: float | None) -> BackupMade:  # fmt: skip
    with blocking.connection() as conn:
        made = backup_tables(conn, tables, settings.backup_dir, codec, keep, keep_days)
    event(log, "backup", set=made.name, tables=[f.table for f in made.files],
          pruned=[p.name for p in made.pruned], pruning_deferred=made.pruning_deferred)  # fmt: skip
    return BackupMade(made.name, made.files, [p.name for p in made.pruned], made.pruning_deferred)


class BackupsController(Controller):
    tags = ["backups"]
    opt = {"scope": "admin"}

    @post(
        "/tables/{table:str}/backups", status_code=201, sync_to_thread=True,
        operation_id="backUpTable", summary="Write an Avro backup of a table (a set of one file)",
        description="Retention (keep, keep_days) removes whole sets, in the order they were"
        " made, never the set just written; `pruned` names what it removed. While another"
        " backup is writing, nothing is removed (`pruning_deferred`): the next backup with"
        " retention removes it.",
        responses=problem_responses(400, 401, 403, 404, 406, 503, 507),
    )  # fmt: skip
    def back_up_table(
        self,
        tables: DataTables,
        table: TablePath,
        blocking: BlockingPool,
        settings: AppSettings,
        codec: CodecQuery = "deflate",
        keep: KeepQuery = None,
        keep_days: KeepDaysQuery = None,
    ) -> BackupMade:
        return _backup(blocking, settings, [known_table(tables, table)], codec, keep, keep_days)

    @post(
        "/backups", status_code=201, sync_to_thread=True, operation_id="backUpEverything",
        summary="Write a full backup set: every table and the ingest log, from one snapshot",
        responses=problem_responses(400, 401, 403, 406, 503, 507),
    )  # fmt: skip
    def back_up_everything(
        self,
        blocking: BlockingPool,
        settings: AppSettings,
        codec: CodecQuery = "deflate",
        keep: KeepQuery = None,
        keep_days: KeepDaysQuery = None,
    ) -> BackupMade:
        return _backup(blocking, settings, None, codec, keep, keep_days)

    @get(
        "/tables/{table:str}/backups", sync_to_thread=True, operation_id="listBackups",
        summary="The backups of a table, oldest first; an unreadable file says why in `problem`",
        responses=problem_responses(400, 401, 403, 404, 406),
    )  # fmt: skip
    def list_table_backups(
        self, tables: DataTables, table: TablePath, settings: AppSettings
    ) -> list[BackupInfo]:
        return list_backups(settings.backup_dir, known_table(tables, table))

    @post(
        "/tables/{table:str}/restore", status_code=200, sync_to_thread=True,
        operation_id="restoreTable", summary="Replace a table's rows with a backup",
        description=(
            "One transaction: the table is locked, emptied, loaded and checked (constraints,"
            " references, row count and checksum) before commit; on any problem it is"
            " unchanged. Only a state a backup of this database recorded is accepted. The"
            " answer says how many rows were added, removed and changed; with dry_run nothing"
            " changes. Default file: the newest backup."
        ),
        responses=problem_responses(400, 401, 403, 404, 406, 409, 422, 503),
    )  # fmt: skip
    def restore(
        self,
        tables: DataTables,
        table: TablePath,
        blocking: BlockingPool,
        settings: AppSettings,
        data: Annotated[RestoreRequest | None, Body()] = None,
        dry_run: Annotated[bool, QueryParameter()] = False,
    ) -> RestoreResult:
        known_table(tables, table)
        files = {p.name: p for p in backup_files(settings.backup_dir, table)}
        if data and data.file:
            wanted = data.file
        else:
            found = newest(settings.backup_dir, table)
            wanted = found.file if found else None
        if wanted is None or wanted not in files:
            raise NotFoundException(f"no backup of {table} named {wanted}" if wanted else
                                    f"{table} has no backup yet")  # fmt: skip
        with blocking.connection() as conn:
            done = restore_table(
                conn, table, files[wanted], dry_run=dry_run or bool(data and data.dry_run),
                catalogued_only=True, lock_timeout=settings.lock_timeout,
            )  # fmt: skip
        if not done.dry_run:
            event(log, "restore", table=table, file=wanted, rows=done.rows, added=done.added,
                  removed=done.removed, changed=done.changed)  # fmt: skip
        return done
