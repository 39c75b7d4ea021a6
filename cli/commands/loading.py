"""dataarch migrate and dataarch generate: CSV files into the database, and
the project's own sample files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dataarch import db, installer, logs, migrate
from dataarch.csvrecords import Dialect
from dataarch.dictionary import read as read_dictionary
from dataarch.generate import generate
from dataarch.output import status
from dataarch.settings import Settings

log = logging.getLogger("dataarch.migrate")


def add_csv_options(p: argparse.ArgumentParser) -> None:
    """What real files differ in; the defaults read the seed's files."""
    p.add_argument(
        "--header",
        action="store_true",
        help="skip the first line (a line naming the columns is skipped anyway)",
    )
    p.add_argument("--delimiter", default=",", help="field separator (default ',')")
    p.add_argument("--encoding", default="utf-8",
                   help="the file's encoding, e.g. latin1, windows-1252")  # fmt: skip


def dialect(args: argparse.Namespace) -> Dialect:
    return Dialect(delimiter=args.delimiter, encoding=args.encoding, header=args.header)


def add_migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv-dir", help="directory of departments.csv, jobs.csv, hired_employees.csv")
    p.add_argument("--sessions", type=_at_least_one, metavar="N",
                   help="sessions that judge a large file at once (default: one a core,"
                   " or DATAARCH_MIGRATE_SESSIONS)")  # fmt: skip
    p.add_argument(
        "--force", action="store_true",
        help="load a file even when its header names another table's columns",
    )  # fmt: skip
    p.add_argument("--retry-rejected", action="store_true",
                   help="judge the open rejections of migrated lines again, e.g. once their"
                   " departments and jobs exist")  # fmt: skip
    add_csv_options(p)


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    if args.retry_rejected:
        return retry(settings, dialect(args))
    csv_dir = Path(args.csv_dir) if args.csv_dir else settings.data_dir
    sessions = args.sessions or settings.migrate_sessions
    return migrate_dir(settings, csv_dir, dialect(args), sessions, force=args.force)


def _at_least_one(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of sessions (1 or more)")
    return int(text)


def migrate_dir(
    settings: Settings, csv_dir: Path, csv_dialect: Dialect, sessions: int, force: bool = False
) -> int:
    if not csv_dir.is_dir():  # before the database: a typo is said at once
        raise FileNotFoundError(f"{csv_dir} is not a directory")
    with db.connect(settings) as conn:
        installer.install(conn)
        tables = read_dictionary(conn)
        files = list(migrate.find_files(tables, csv_dir))
        if not files:
            names = ", ".join(n for t in tables.tables for n in t.file_names)
            raise FileNotFoundError(f"no CSV file to migrate in {csv_dir} (looked for {names})")
        for table, path in files:
            with logs.timed() as took, status(path.name) as line:
                summary = migrate.migrate_file(
                    conn, table, path, line, sessions=sessions, dialect=csv_dialect, force=force
                )
            print(migrate.describe(summary), flush=True)
            counts = {k: summary.get(k) for k in ("batch_id", "submitted", "inserted", "rejected")}
            logs.event(log, "migrate", source=f"csv:{path.name}", table=table,
                       status=summary["status"], **counts, **took)  # fmt: skip
    return 0


def retry(settings: Settings, csv_dialect: Dialect) -> int:
    with db.connect(settings) as conn:
        installer.install(conn)
        for table in read_dictionary(conn).names:
            summary = migrate.retry_rejected(conn, table, csv_dialect)
            if summary["retried"]:
                print(migrate.describe_retry(summary), flush=True)
                logs.event(log, "retry", **{k: v for k, v in summary.items() if k != "by_reason"})
            else:
                print(f"{table}: no open rejection to judge again")
    return 0


def add_generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="output directory (default data/historical)")
    p.add_argument("--employees", type=int, default=2000, help="lines of hired_employees.csv")
    p.add_argument("--seed", type=int, default=2021, help="the same seed, the same files")
    p.add_argument("--bad-ratio", type=float, default=0.035,
                   help="the share of lines that break a rule (default 0.035)")  # fmt: skip


def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else settings.data_dir
    counts = generate(out, employees=args.employees, seed=args.seed, bad_ratio=args.bad_ratio)
    for name, n in counts.items():
        print(f"{out / name}: {n} lines")
    return 0


COMMANDS = {
    "migrate": (add_migrate_arguments, run_migrate),
    "generate": (add_generate_arguments, run_generate),
}
