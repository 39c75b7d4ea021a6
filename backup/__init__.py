"""Avro backups of the tables, and restores from them.

    python -m backup dump [TABLE ...] [--keep N] [--keep-days D] [--codec C]
    python -m backup verify [FILE|SET]
    python -m backup restore TABLE [--file PATH] [--dry-run]
    python -m backup restore --all [--set NAME] [--dry-run]
    python -m backup list [TABLE]

The same functions serve `dataarch backup|restore|backups` and the HTTP routes.
"""

from backup.dump import BackupSet, backup_tables
from backup.restore import BusyError, RestoreError, RestoreResult, restore_set, restore_table
from backup.store import BackupError, BackupInfo, StorageError, list_backups, list_sets

__all__ = [
    "BackupError",
    "BackupInfo",
    "BackupSet",
    "BusyError",
    "RestoreError",
    "RestoreResult",
    "StorageError",
    "backup_tables",
    "list_backups",
    "list_sets",
    "restore_set",
    "restore_table",
]
