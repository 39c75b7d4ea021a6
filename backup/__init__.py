"""Avro backups of the tables, and restores from them.

    python -m backup dump [TABLE ...] [--dir DIR] [--keep N] [--codec deflate|snappy|null]
    python -m backup restore TABLE [--file PATH]
    python -m backup list [TABLE]

The same functions serve `dataarch backup|restore|backups` and the HTTP routes.
"""

from backup.dump import backup_tables
from backup.restore import RestoreError, restore_table
from backup.store import BackupInfo, list_backups

__all__ = ["BackupInfo", "RestoreError", "backup_tables", "list_backups", "restore_table"]
