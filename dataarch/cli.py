"""The `dataarch` command. Each subcommand is a short function over the
modules that do the work; settings are read once, here."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

import backup.__main__ as backup_cli
import bench.__main__ as bench_cli
import reports.__main__ as reports_cli
from backup import BackupError
from dataarch import db, installer, logs, migrate
from dataarch.csvrecords import Dialect
from dataarch.generate import generate
from dataarch.pgserver import ClusterError
from dataarch.settings import ApiToken, Settings

DEFAULT_URL = "http://127.0.0.1:8000"
log = logging.getLogger("dataarch.cli")

Handler = Callable[[argparse.Namespace, Settings], int]


def _db(args: argparse.Namespace, settings: Settings) -> int:
    cluster = db.embedded_cluster(settings)
    if args.action in ("start", "stop") and not settings.embedded:
        print("DATABASE_URL or PG* variables are set: the embedded server is not in use.")
        return 0 if args.action != "start" else 1
    if args.action == "start":
        conn = db.conninfo(settings)
        print(f"PostgreSQL is running: {conn}")
    elif args.action == "stop":
        cluster.stop()
        print("PostgreSQL stopped.")
    elif args.action == "status":
        return _db_status(settings)
    elif args.action == "check":
        return _db_check(settings)
    elif args.action == "url":
        print(db.conninfo(settings))
    elif args.action == "init":
        with db.connect(settings) as conn:
            applied = installer.install(conn)
            db.set_api_password(conn, settings)
            version = installer.schema_version(conn)
        migrations = sum(name.startswith("schema/") for name in applied)
        print(
            f"schema version {version}: {migrations} migration(s) and"
            f" {len(applied) - migrations} code file(s) applied"
            if applied
            else f"schema version {version}: up to date"
        )
    return 0


def _db_check(settings: Settings) -> int:
    """Rows an earlier release let in that today's constraints refuse (they
    stop a backup): listed by table and constraint; status 1 when any."""
    with db.connect(settings) as conn:
        found = conn.execute(
            "select t, b.constraint_name, count(*), string_agg(b.row_key, ', ')"
            " filter (where b.n <= 10)"
            " from unnest(_backup_tables()) as t,"
            " lateral (select r.*, row_number() over () as n"
            "          from rows_breaking_constraints(t, 100000) as r) as b"
            " group by 1, 2 order by 1, 2"
        ).fetchall()
    for table, constraint, count, keys in found:
        more = " ..." if count > 10 else ""
        print(f"{table}: {count} row(s) break {constraint}: {keys}{more}")
    if found:
        print("correct or delete them (by primary key, as listed); until then no backup is written")
        return 1
    print("every row holds every constraint")
    return 0


def _db_status(settings: Settings) -> int:
    """Where the database is, whether it runs, and what an install would change."""
    if settings.embedded:
        cluster = db.embedded_cluster(settings)
        running = cluster.is_running()
        print(f"embedded PostgreSQL at {cluster.root}: {'running' if running else 'stopped'}")
        if not running:
            return 3
    with db.connect(settings) as conn:
        todo = installer.plan(conn)
    print(f"schema version: {todo.version}")
    for sql_file in todo.pending:
        print(f"  pending migration: {sql_file.name}")
    for sql_file in todo.repeatable:
        print(f"  code to apply: {sql_file.name}")
    for name in todo.edited:
        print(f"  EDITED after it was applied (install will refuse): {name}")
    if todo.up_to_date:
        print("  up to date")
    else:
        print("  run `dataarch db init` to apply")
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    csv_dir = Path(args.csv_dir) if args.csv_dir else settings.data_dir
    dialect = _dialect(args)
    if getattr(args, "retry_rejected", False):
        with db.connect(settings) as conn:
            installer.install(conn)
            for table in migrate.TABLE_FILES:
                summary = migrate.retry_rejected(conn, table, dialect)
                if summary["retried"]:
                    print(migrate.describe_retry(summary), flush=True)
                    logs.event(
                        log, "retry", **{k: v for k, v in summary.items() if k != "by_reason"}
                    )
        return 0
    files = list(migrate.find_files(csv_dir))
    if not files:
        names = ", ".join(n for names in migrate.TABLE_FILES.values() for n in names)
        print(f"dataarch: no CSV file to migrate in {csv_dir} (looked for {names})",
              file=sys.stderr)  # fmt: skip
        return 1
    with db.connect(settings) as conn:
        installer.install(conn)
        for table, path in files:
            with logs.timed() as took, _status_line(path.name) as status:
                summary = migrate.migrate_file(conn, table, path, progress=status, dialect=dialect)
            print(migrate.describe(summary), flush=True)
            counts = {k: summary.get(k) for k in ("batch_id", "submitted", "inserted", "rejected")}
            logs.event(log, "migrate", source=f"csv:{path.name}", table=table,
                       status=summary["status"], **counts, **took)  # fmt: skip
    return 0


def _dialect(args: argparse.Namespace) -> Dialect:
    return Dialect(
        delimiter=getattr(args, "delimiter", ","),
        encoding=getattr(args, "encoding", "utf-8"),
        header=getattr(args, "header", False),
    )


def _add_csv_options(p: argparse.ArgumentParser) -> None:
    """What real files differ in; the defaults read the seed's files."""
    p.add_argument(
        "--header",
        action="store_true",
        help="skip the first line (a line naming the columns is skipped anyway)",
    )
    p.add_argument("--delimiter", default=",", help="field separator (default ',')")
    p.add_argument("--encoding", default="utf-8",
                   help="the file's encoding, e.g. latin1, windows-1252")  # fmt: skip


@contextmanager
def _status_line(label: str) -> Iterator[migrate.Progress | None]:
    """One line on a terminal's stderr that each new phrase overwrites, and
    that is erased at the end; nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return

    def show(text: str) -> None:
        sys.stderr.write(f"\r\033[K{label}: {text}")
        sys.stderr.flush()

    try:
        yield show
    finally:
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    out = Path(args.out) if args.out else settings.data_dir
    counts = generate(out, employees=args.employees, seed=args.seed, bad_ratio=args.bad_ratio)
    for name, n in counts.items():
        print(f"{out / name}: {n} lines")
    return 0


def _with_token(settings: Settings) -> Settings:
    """The configured API token, else the one kept in var/api-token (made once, 0600)."""
    if settings.api_tokens:
        return settings
    path = settings.token_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return dataclasses.replace(settings, tokens=(ApiToken(path.read_text().strip(), "admin"),))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from app import create_app

    token_is_ours = not settings.api_tokens  # none configured: var/api-token serves
    settings = _with_token(settings)
    db.conninfo(settings)  # starts the embedded server when it is the one in use
    print(f"serving on http://{args.host}:{args.port}  (OpenAPI: /schema/openapi.json)")
    if token_is_ours:  # a token the user configured is theirs already; never echo it
        print(f"API token (from {settings.token_file}): {settings.api_tokens[0]}")
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning",
        log_config=None, timeout_graceful_shutdown=5,  # SIGTERM ends it, even mid-request
    )  # fmt: skip
    return 0


def _with_api(args: argparse.Namespace, settings: Settings, work: Callable[[Any], int]) -> int:
    """Run `work` with an API client; its failures become one line. The client
    (httpx) is imported here, so the other commands start without it."""
    import httpx

    from dataarch import client

    token = args.token or (_with_token(settings).api_tokens[0])
    try:
        with client.ApiClient(args.url, token) as api:
            return work(api)
    except client.ApiError as exc:
        print(f"dataarch: {exc}", file=sys.stderr)
    except httpx.TransportError as exc:
        print(f"dataarch: cannot reach the API at {args.url}: {exc}", file=sys.stderr)
    return 1


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from dataarch import client

    path = Path(args.file)
    if not path.is_file():
        print(f"dataarch: {path}: no such file", file=sys.stderr)
        return 1

    def work(api: client.ApiClient) -> int:
        summary = client.ingest_file(api, args.table, path, _dialect(args))
        print(client.describe(summary))
        return 1 if summary.refused else 0

    return _with_api(args, settings, work)


def _upload(args: argparse.Namespace, settings: Settings) -> int:
    from dataarch import client

    path = Path(args.file)
    if not path.is_file():
        print(f"dataarch: {path}: no such file", file=sys.stderr)
        return 1

    def work(api: client.ApiClient) -> int:
        print(migrate.describe(client.upload_file(api, args.table, path, _dialect(args))))
        return 0

    return _with_api(args, settings, work)


def _get(args: argparse.Namespace, settings: Settings) -> int:
    def work(api: Any) -> int:
        print(json.dumps(api.request("GET", f"/tables/{args.table}/rows/{args.id}"), indent=2))
        return 0

    return _with_api(args, settings, work)


def _rejections(args: argparse.Namespace, settings: Settings) -> int:
    """`rejections TABLE`, `rejections export TABLE --out DIR`, `rejections close ID...`."""
    verb, *rest = args.words
    if verb == "close":
        return _close_rejections(args, settings, rest)
    if verb == "export":
        if len(rest) != 1 or not args.out:
            print("dataarch: usage: rejections export TABLE --out DIR", file=sys.stderr)
            return 2
        return _export_rejections(args, settings, _table_word(rest[0]))
    if rest:
        print(
            f"dataarch: unexpected {' '.join(rest)!r}: rejections TABLE [options]", file=sys.stderr
        )
        return 2
    table = _table_word(verb)
    params = {"limit": args.limit, "offset": args.offset, **_rejection_filters(args)}

    def work(api: Any) -> int:
        page = api.request("GET", f"/tables/{table}/rejections", params=params)
        for item in page["items"]:
            where = item["row_index"] if item["line_number"] is None else item["line_number"]
            print(f"#{item['error_id']} batch {item['batch_id']} at {where}: {item['status']}:"
                  f" {item['reason_code']}: {item['message']}")  # fmt: skip
        print(f"{len(page['items'])} of {page['total']} shown")
        return 0

    return _with_api(args, settings, work)


def _table_word(word: str) -> str:
    if word not in migrate.TABLE_FILES:
        raise ValueError(f"unknown table {word!r}: use {', '.join(migrate.TABLE_FILES)}")
    return word


def _rejection_filters(args: argparse.Namespace) -> dict[str, object]:
    found = {"batch_id": args.batch, "reason": args.reason, "since": args.since,
             "status": "open" if args.open else args.status}  # fmt: skip
    return {k: v for k, v in found.items() if v is not None}


def _export_rejections(args: argparse.Namespace, settings: Settings, table: str) -> int:
    from dataarch.client import COLUMNS
    from dataarch.rejects import Rejected, reject_files

    def work(api: Any) -> int:
        items, offset = [], 0
        while True:
            page = api.request("GET", f"/tables/{table}/rejections", params={
                **_rejection_filters(args), "limit": 1000, "offset": offset})  # fmt: skip
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        rows = [
            Rejected(i["batch_id"], i["source"], i["line_number"] or i["row_index"],
                     i["raw_line"], i["raw_row"], i["reason_code"], i["field"], i["message"])
            for i in sorted(items, key=lambda i: i["error_id"])
        ]  # fmt: skip
        records, log_text, written = reject_files(rows, COLUMNS[table])
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{table}.reject.csv").write_text(records, encoding="utf-8")
        (out / f"{table}.reject.log").write_text(log_text, encoding="utf-8")
        print(f"{out / f'{table}.reject.csv'}: {written} record(s) to fix and send again")
        print(f"{out / f'{table}.reject.log'}: why each was rejected ({len(rows)} in all)")
        return 0

    return _with_api(args, settings, work)


def _close_rejections(args: argparse.Namespace, settings: Settings, words: list[str]) -> int:
    if not words or not all(w.isdigit() for w in words) or not args.note:
        print("dataarch: usage: rejections close ID... --note TEXT", file=sys.stderr)
        return 2
    body = {
        "ids": [int(w) for w in words],
        "note": args.note,
        "by": args.by or os.environ.get("USER"),
    }

    def work(api: Any) -> int:
        result = api.request("POST", "/rejections/close", json=body)
        print(f"closed: {', '.join(map(str, result['closed'])) or 'none'}")
        if result["not_open"]:
            print(
                f"not open (resolved or closed already): {', '.join(map(str, result['not_open']))}"
            )
        if result["unknown"]:
            print(f"no such rejection: {', '.join(map(str, result['unknown']))}")
        return 0 if not result["unknown"] else 1

    return _with_api(args, settings, work)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: database up, schema installed, historical data migrated once, served."""
    status = _db(argparse.Namespace(action="init"), settings)
    if status == 0:
        status = _migrate(argparse.Namespace(csv_dir=None), settings)  # the defaults
    if status == 0:
        status = reports_cli.run(argparse.Namespace(year=2021, out=None), settings)
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
    if status or args.no_serve:
        return status
    return _serve(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataarch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db", help="the database: start|stop|status|url|init|check")
    p.add_argument("action", choices=["start", "stop", "status", "url", "init", "check"])
    p.set_defaults(handler=_db)

    p = sub.add_parser("migrate", help="load the historical CSV files (once per file content)")
    p.add_argument("--csv-dir", help="directory of departments.csv, jobs.csv, hired_employees.csv")
    p.add_argument("--retry-rejected", action="store_true",
                   help="judge the open rejections of migrated lines again, e.g. once their"
                   " departments and jobs exist")  # fmt: skip
    _add_csv_options(p)
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("generate", help="write deterministic sample CSV files")
    p.add_argument("--out", help="output directory (default data/historical)")
    p.add_argument("--employees", type=int, default=2000)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--bad-ratio", type=float, default=0.035)
    p.set_defaults(handler=_generate)

    p = sub.add_parser("up", help="database, schema, one-time migration, then serve the API")
    _add_bind_options(p)
    p.add_argument("--no-serve", action="store_true", help="stop after the migration")
    p.set_defaults(handler=_up)

    p = sub.add_parser("serve", help="serve the HTTP API")
    _add_bind_options(p)
    p.set_defaults(handler=_serve)

    p = sub.add_parser("ingest", help="send a CSV file to the API in batches of 1000 rows")
    p.add_argument("table", choices=sorted(migrate.TABLE_FILES))
    p.add_argument("file")
    _add_csv_options(p)
    _add_client_options(p)
    p.set_defaults(handler=_ingest)

    p = sub.add_parser("upload", help="send a CSV file to the API whole, loaded as migrate does")
    p.add_argument("table", choices=sorted(migrate.TABLE_FILES))
    p.add_argument("file")
    _add_csv_options(p)
    _add_client_options(p)
    p.set_defaults(handler=_upload)

    p = sub.add_parser("get", help="one row by id, from the API")
    p.add_argument("table", choices=sorted(migrate.TABLE_FILES))
    p.add_argument("id")
    _add_client_options(p)
    p.set_defaults(handler=_get)

    p = sub.add_parser(
        "rejections",
        help="rejections of a table (newest first); `export TABLE --out DIR`; `close ID... --note`",
    )
    p.add_argument("words", nargs="+", metavar="TABLE | export TABLE | close ID...")
    p.add_argument("--batch", type=int)
    p.add_argument("--open", action="store_true", help="only open ones (not resolved or closed)")
    p.add_argument("--status", choices=["open", "resolved", "closed"])
    p.add_argument("--reason", help="only this reason code")
    p.add_argument("--since", help="only those received since (ISO 8601 date-time)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--out", help="export: the directory for TABLE.reject.csv and .reject.log")
    p.add_argument("--note", help="close: why they are closed")
    p.add_argument("--by", help="close: who closes them (default: $USER)")
    _add_client_options(p)
    p.set_defaults(handler=_rejections)

    backup_cli.add_commands(sub, names=("backup", "restore", "backups"))

    p = sub.add_parser("bench", help="measure every path against its physical limit")
    bench_cli.add_arguments(p)
    p.set_defaults(handler=bench_cli.run)

    p = sub.add_parser("report", help="write the KPI reports as HTML pages")
    reports_cli.add_arguments(p)
    p.set_defaults(handler=reports_cli.run)
    return parser


def _add_bind_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)


def _add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("DATAARCH_URL", DEFAULT_URL))
    p.add_argument("--token", help="API token (default: DATAARCH_API_TOKEN or var/api-token)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    backup_cli.check_restore_args(parser, args)
    settings = Settings.from_env()
    logs.configure(settings.log_file)
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except (ClusterError, migrate.MigrationError, installer.InstallError, BackupError) as exc:
        print(f"dataarch: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        print(f"dataarch: cannot reach the database: {exc}".rstrip(), file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad option value the parser could not see
        print(f"dataarch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
