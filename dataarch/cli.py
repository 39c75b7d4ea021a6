"""The `dataarch` command. Each subcommand is a short function over the
modules that do the work; settings are read once, here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg

from dataarch import db, installer, migrate
from dataarch.generate import generate
from dataarch.pgserver import ClusterError
from dataarch.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _db(args: argparse.Namespace, settings: Settings) -> int:
    cluster = db.embedded_cluster(settings)
    if args.action in ("start", "stop", "status") and not settings.embedded:
        print("DATABASE_URL or PG* variables are set: the embedded server is not in use.")
        return 0 if args.action != "start" else 1
    if args.action == "start":
        conn = db.conninfo(settings)
        print(f"PostgreSQL is running: {conn}")
    elif args.action == "stop":
        cluster.stop()
        print("PostgreSQL stopped.")
    elif args.action == "status":
        running = cluster.is_running()
        print(f"embedded PostgreSQL at {cluster.root}: {'running' if running else 'stopped'}")
        return 0 if running else 3
    elif args.action == "url":
        print(db.conninfo(settings))
    elif args.action == "init":
        with db.connect(settings) as conn:
            changed = installer.install(conn)
            version = installer.schema_version(conn)
        print(f"schema installed (version {version}; {len(changed)} file(s) changed)")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    csv_dir = Path(args.csv_dir) if args.csv_dir else settings.data_dir
    with db.connect(settings) as conn:
        installer.install(conn)
        for table, path in migrate.find_files(csv_dir):
            print(f"migrating {path} ...", file=sys.stderr, flush=True)
            print(migrate.describe(migrate.migrate_file(conn, table, path)), flush=True)
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else settings.data_dir
    counts = generate(out, employees=args.employees, seed=args.seed, bad_ratio=args.bad_ratio)
    for name, n in counts.items():
        print(f"{out / name}: {n} lines")
    return 0


def _up(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: database up, schema installed, historical data migrated once."""
    status = _db(argparse.Namespace(action="init"), settings)
    if status == 0:
        status = _migrate(argparse.Namespace(csv_dir=None), settings)
    with db.connect(settings) as conn:
        counts = conn.execute(
            "select (select count(*) from departments), (select count(*) from jobs),"
            " (select count(*) from employees), (select count(*) from ingest_errors)"
        ).fetchone()
    departments, jobs, employees, rejected = counts
    print(
        f"database holds {departments} departments, {jobs} jobs, {employees} employees;"
        f" {rejected} rejected rows logged"
    )
    print(f"psql: psql '{db.conninfo(settings)}'")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataarch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="the database: start|stop|status|url|init")
    p.add_argument("action", choices=["start", "stop", "status", "url", "init"])
    p.set_defaults(handler=_db)

    p = sub.add_parser("migrate", help="load the historical CSV files (once per file content)")
    p.add_argument("--csv-dir", help="directory of departments.csv, jobs.csv, hired_employees.csv")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("generate", help="write deterministic sample CSV files")
    p.add_argument("--out", help="output directory (default data/historical)")
    p.add_argument("--employees", type=int, default=2000)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--bad-ratio", type=float, default=0.035)
    p.set_defaults(handler=_generate)

    p = sub.add_parser("up", help="start the database, install the schema, migrate once")
    p.set_defaults(handler=_up)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except (ClusterError, migrate.MigrationError, installer.InstallError) as exc:
        print(f"dataarch: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"dataarch: cannot reach the database: {exc}".rstrip(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
