"""python -m backup dump|verify|restore|list (see the package docstring);
`dataarch` names them backup, backup verify, restore and backups."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import nullcontext
from pathlib import Path

import psycopg

from backup import dump as dumping
from backup import restore as restoring
from backup import store
from backup.verify import verify
from dataarch import db, logs
from dataarch.errors import NotRunning
from dataarch.settings import Settings

log = logging.getLogger("dataarch.backup")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dump(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings) as conn, logs.timed() as took:
        written = dumping.backup_tables(
            conn, args.tables, settings.backup_dir, args.codec, args.keep, args.keep_days, _say
        )
    print(f"set {written.name}: {len(written.files)} file(s)")
    for info in written.files:
        print(f"  {info.table:<17} {info.rows:>9} rows  {store.path_of(settings.backup_dir, info)}"
              f" ({info.bytes} bytes, {info.codec}, checksum {info.checksum})")  # fmt: skip
        logs.event(log, "backup", set=written.name, table=info.table, rows=info.rows,
                   file=info.file, bytes=info.bytes, codec=info.codec, **took)  # fmt: skip
    for path in written.pruned:
        print(f"  pruned {path}")
    if written.pruning_deferred:
        print("  nothing pruned: another backup is writing (the next backup with --keep prunes)")
        logs.event(log, "pruning deferred", set=written.name)
    if written.pruned:
        logs.event(log, "pruned", files=[p.name for p in written.pruned])
    return 0


def check(args: argparse.Namespace, settings: Settings) -> int:
    """Every check there is: with the database, the checksums too; without
    one (lost, or not running), the files on their own."""
    try:
        conn = db.connect(settings)
    except (psycopg.OperationalError, NotRunning) as exc:
        print(f"no database ({str(exc).strip().splitlines()[0]}): checking the files alone,"
              " not their checksums", file=sys.stderr)  # fmt: skip
        conn = None
    with conn or nullcontext():
        results = verify(conn, settings.backup_dir, args.target)
    for result in results:
        status = "ok    " if result.ok else "FAILED"
        rows = f"{result.rows} rows" if result.rows >= 0 else ""
        unchecked = "" if result.checksum_checked else "  (checksum not checked)"
        print(f"{status} {result.path}  {rows}{'  ' + result.problem if result.problem else ''}"
              f"{unchecked}")  # fmt: skip
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} of {len(results)} file(s) verified" +
          (f"; {failed} FAILED" if failed else ""))  # fmt: skip
    return 1 if failed or not results else 0


def restore(args: argparse.Namespace, settings: Settings) -> int:
    if args.all == bool(args.table):
        raise ValueError("restore needs a TABLE or --all (not both)")
    if args.set and not args.all:
        raise ValueError("--set goes with --all")
    if args.file and args.all:
        raise ValueError("--file restores one table: give a TABLE, not --all")
    with db.connect(settings) as conn, logs.timed() as took:
        if args.all:
            results = restoring.restore_set(
                conn, settings.backup_dir, args.set, dry_run=args.dry_run,
                lock_timeout=settings.lock_timeout,
            )  # fmt: skip
        else:
            restoring.require_table(conn, args.table)  # before its name makes a path
            path = Path(args.file) if args.file else _newest(settings.backup_dir, args.table)
            results = [restoring.restore_table(
                conn, args.table, path, dry_run=args.dry_run, lock_timeout=settings.lock_timeout
            )]  # fmt: skip
    for r in results:
        verb = "would restore" if r.dry_run else "restored"
        print(f"{r.table}: {verb} {r.rows} rows from {r.file}"
              f" ({r.added} added, {r.removed} removed, {r.changed} changed)")  # fmt: skip
        if not r.dry_run:
            logs.event(log, "restore", table=r.table, rows=r.rows, file=r.file,
                       added=r.added, removed=r.removed, changed=r.changed, **took)  # fmt: skip
    if results and (followed := describe_bookkeeping(results[0].bookkeeping)):
        print(("would follow: " if args.dry_run else "followed: ") + followed)
    if args.all and (left := _left_out(settings.backup_dir, args.set, results)):
        print(f"partial set: {', '.join(left)} not in it, left as they are")
    if args.dry_run:
        print("dry run: nothing changed")
    return 0


def describe_bookkeeping(done: dict | None) -> str:
    """What a restore did to the records about the rows, in words."""
    if not done:
        return ""
    said = [
        f"{done['files']} migrated file(s) may load again" if done.get("files") else "",
        f"{done['answers']} stored answer(s) forgotten" if done.get("answers") else "",
        f"{done['reopened']} resolved rejection(s) open again" if done.get("reopened") else "",
    ]
    return "; ".join(s for s in said if s)


def _left_out(backup_dir: Path, name: str | None, results: list) -> list[str]:
    found = store.find_set(backup_dir, name)
    if found.full:
        return []
    return sorted(store.FULL_SET - {r.table for r in results})


def _newest(backup_dir: Path, table: str) -> Path:
    found = store.newest(backup_dir, table)
    if found is None:
        raise restoring.RestoreError(f"no backup of {table} in {backup_dir / table}")
    return store.path_of(backup_dir, found)


def show(args: argparse.Namespace, settings: Settings) -> int:
    sets = [] if args.table else store.list_sets(settings.backup_dir)
    if args.json:
        print(json.dumps({"sets": [s.as_dict() for s in store.list_sets(settings.backup_dir)]},
                         indent=2))  # fmt: skip
        return 0
    if sets:
        print("sets, oldest first:")
    for found in sets:
        state = "complete" if found.complete else f"INCOMPLETE (gone: {', '.join(found.missing)})"
        kind = "full" if found.full else "partial"
        number = f"#{found.number}" if found.number is not None else "#-"
        future = "  DATED IN THE FUTURE (a clock ran fast)" if found.in_the_future else ""
        tables = ", ".join(f"{t} {f['rows']}" for t, f in found.files.items())
        print(f"  {number:>5} {found.name}  {kind}, {state}: {tables}{future}")
    tables = [args.table] if args.table else _folders(settings.backup_dir)
    infos = [i for t in tables for i in store.list_backups(settings.backup_dir, t)]
    if infos:
        print("files, oldest first:")
    for info in infos:
        path = store.path_of(settings.backup_dir, info)
        if info.problem:
            print(f"  {path}  UNREADABLE: {info.problem}")
        else:
            print(f"  {info.table:<17} {info.rows:>9} rows  {info.created_at}  {info.bytes} bytes"
                  f"  checksum {info.checksum}  {path}")  # fmt: skip
    if not sets and not infos:
        print(f"no backups in {settings.backup_dir}")
    return 0


def _folders(backup_dir: Path) -> list[str]:
    if not backup_dir.is_dir():
        return []
    return sorted(p.name for p in backup_dir.iterdir() if p.is_dir() and p.name != store.SETS)


def _at_least(minimum: float, kind: type = int):  # noqa: ANN202
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text}")
        return value

    return parse


def add_dump_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tables", nargs="*", metavar="TABLE")
    p.add_argument("--keep", type=_at_least(1), metavar="N",
                   help="keep the newest N full sets, and of each table the newest N partial"
                   " ones (whole sets, never the one just written)")  # fmt: skip
    p.add_argument("--keep-days", type=_at_least(0.001, float), metavar="D",
                   help="delete backups older than D days (never the new one)")  # fmt: skip
    p.add_argument("--codec", choices=dumping.CODECS, default="deflate",
                   help="the Avro files' compression (default deflate)")  # fmt: skip


def add_restore_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", help="a table of the data dictionary")
    p.add_argument("--file", help="backup file (default: the newest backup of the table)")
    p.add_argument("--all", action="store_true", help="every table of a set, in one transaction")
    p.add_argument("--set", help="with --all: the set's name (default: the newest complete full"
                   " set; a partial one restores only its tables)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", nargs="?", help="only this table's backup files")
    p.add_argument("--json", action="store_true",
                   help="every set as JSON: kind, number, times, server, files")  # fmt: skip


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="?", metavar="FILE|SET",
                   help="one backup file, or a set by name (default: every backup)")  # fmt: skip


# `dataarch` names them backup, verify (`backup verify` too), restore and backups
COMMANDS = {
    "backup": (add_dump_arguments, dump),
    "verify": (add_verify_arguments, check),
    "restore": (add_restore_arguments, restore),
    "backups": (add_list_arguments, show),
}
HELP = {
    "backup": "write a backup set (default: every table); `verify [FILE|SET]` checks backups",
    "restore": "restore a table, or a whole set, from a backup",
    "backups": "list backup sets and files",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backup", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_arguments, handler) in {
        "dump": COMMANDS["backup"], "restore": COMMANDS["restore"],
        "list": COMMANDS["backups"], "verify": COMMANDS["verify"],
    }.items():  # fmt: skip
        p = sub.add_parser(name)
        add_arguments(p)
        p.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_file)
    try:
        return args.handler(args, settings)
    except (store.BackupError, ValueError) as exc:
        print(f"backup: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
