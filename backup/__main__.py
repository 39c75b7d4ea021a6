"""python -m backup dump|restore|list (see the package docstring)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from backup import RestoreError, backup_tables, list_backups, restore_table
from backup.dump import CODECS
from backup.store import backup_files
from dataarch import db, logs
from dataarch.settings import Settings

TABLES = ("departments", "jobs", "employees")
log = logging.getLogger("dataarch.backup")


def dump(args: argparse.Namespace, settings: Settings) -> int:
    tables = args.tables or list(TABLES)
    with db.connect(settings) as conn, logs.timed() as took:
        written = backup_tables(conn, tables, settings.backup_dir, args.codec, args.keep)
    for info in written:
        print(f"{info.table}: {info.rows} rows -> {info.path} ({info.bytes} bytes, {info.codec})")
        logs.event(log, "backup", table=info.table, rows=info.rows, file=info.file,
                   bytes=info.bytes, codec=info.codec, **took)  # fmt: skip
    return 0


def restore(args: argparse.Namespace, settings: Settings) -> int:
    if args.file:
        path = Path(args.file)
    else:
        files = backup_files(settings.backup_dir, args.table)
        if not files:
            raise RestoreError(f"no backup of {args.table} in {settings.backup_dir / args.table}")
        path = files[-1]
    with db.connect(settings) as conn, logs.timed() as took:
        rows = restore_table(conn, args.table, path)
    print(f"{args.table}: restored {rows} rows from {path}")
    logs.event(log, "restore", table=args.table, rows=rows, file=path.name, **took)
    return 0


def show(args: argparse.Namespace, settings: Settings) -> int:
    for table in [args.table] if args.table else TABLES:
        for info in list_backups(settings.backup_dir, table):
            print(f"{info.table}\t{info.rows}\t{info.created_at}\t{info.bytes}\t{info.path}")
    return 0


def table_name(value: str) -> str:
    if value not in TABLES:
        raise argparse.ArgumentTypeError(f"unknown table {value!r}: use {', '.join(TABLES)}")
    return value


def add_commands(
    sub: argparse._SubParsersAction, names: tuple[str, str, str] = ("dump", "restore", "list")
) -> None:
    """Register the three commands; `dataarch` names them backup, restore, backups."""
    dump_name, restore_name, list_name = names
    p = sub.add_parser(dump_name, help="write an Avro backup of tables (default: all)")
    p.add_argument("tables", nargs="*", type=table_name, metavar="TABLE")
    p.add_argument("--keep", type=int, help="keep only the newest N backups of each table")
    p.add_argument("--codec", choices=CODECS, default="deflate")
    p.set_defaults(handler=dump)
    p = sub.add_parser(restore_name, help="restore a table from a backup (default: latest)")
    p.add_argument("table", choices=TABLES)
    p.add_argument("--file", help="backup file (default: the newest backup of the table)")
    p.set_defaults(handler=restore)
    p = sub.add_parser(list_name, help="list backups with row counts and times")
    p.add_argument("table", nargs="?", choices=TABLES)
    p.set_defaults(handler=show)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backup", description=__doc__)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_file)
    try:
        return args.handler(args, settings)
    except (RestoreError, ValueError) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
