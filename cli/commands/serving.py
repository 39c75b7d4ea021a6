"""dataarch serve (the HTTP API) and dataarch up (what `make run` does)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

import psycopg
from psycopg.sql import SQL, Identifier

from cli.commands import database, loading
from dataarch import db
from dataarch.csvrecords import PLAIN
from dataarch.dictionary import read as read_dictionary
from dataarch.errors import Failure
from dataarch.settings import Settings


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, not {text!r}")
    return int(text)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default=os.environ.get("DATAARCH_HOST", "127.0.0.1"),
                   help="the address to listen on (default 127.0.0.1, or DATAARCH_HOST;"
                   " 0.0.0.0 for every interface)")  # fmt: skip
    p.add_argument(
        "--port", type=port_number,
        default=port_number(os.environ.get("DATAARCH_PORT") or "8000"),
        help="the port (default 8000, or DATAARCH_PORT; `make run PORT=8080`)",
    )  # fmt: skip


def _can_bind(host: str, port: int) -> None:
    """Fail at once, and say why, when the address cannot be served on."""
    try:
        with socket.create_server((host, port), reuse_port=False):
            pass
    except OSError as exc:
        raise ServeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


class ServeError(Failure):
    """The API cannot start; the message says why."""


def _protocol() -> type:
    """uvicorn's HTTP protocol, answering a request it cannot read (a URL or a
    header too long, bytes that are not HTTP) with a problem document like
    every other error, instead of a plain-text line."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class ProblemAnswers(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            why = msg.rstrip(".").lower()
            detail = f"the request could not be read as HTTP ({why}): a URL or header too long?"
            body = json.dumps({"status": 400, "title": "Bad Request", "type": "about:blank",
                               "detail": detail}).encode()  # fmt: skip
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\n"
                b"content-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            self.transport.close()

    return ProblemAnswers


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    """The API, over a database that is running (it never starts one)."""
    import uvicorn

    from app import create_app

    _can_bind(args.host, args.port)
    token_is_ours = not settings.api_tokens  # no admin token configured: var/api-token's
    settings = settings.with_generated_token()
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    _tell_clients(settings, url)
    print(f"serving on {url}  (OpenAPI: /schema/openapi.json; the client commands use it)")
    if token_is_ours:  # a token the user configured is theirs already; never echo it
        print(f"API token (from {settings.token_file}): {settings.api_tokens[0]}")
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning",
        log_config=None, timeout_graceful_shutdown=5,  # SIGTERM ends it, even mid-request
        http=_protocol(),
    )  # fmt: skip
    return 0


def _tell_clients(settings: Settings, url: str) -> None:
    """var/api-url: where this server serves, and its process, so that the
    client commands find it (and wait for it only while it runs)."""
    try:
        settings.address_file.parent.mkdir(parents=True, exist_ok=True)
        settings.address_file.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
    except OSError as exc:  # a read-only tree: clients need --url
        print(f"dataarch: cannot write {settings.address_file}: {exc.strerror}", file=sys.stderr)


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    add_serve_arguments(p)
    p.add_argument("--no-serve", action="store_true", help="stop after the migration")
    p.add_argument("--no-sample", action="store_true",
                   help="never load the synthetic sample, even into an empty database"
                   " (a deployment's first start)")  # fmt: skip


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    """`make run`: database up, schema installed, historical data migrated once,
    reports written, API served."""
    from reports.__main__ import run as write_reports

    if not args.no_serve:
        _can_bind(args.host, args.port)  # before minutes of work, not after
    db.conninfo(settings, start=True)
    print(database.init(settings))
    status = 0
    if args.no_sample:
        pass
    elif _holds_data(settings):
        print("the database holds data: the synthetic sample is not loaded"
              " (`dataarch migrate --csv-dir DIR` loads your files)")  # fmt: skip
    else:
        print(f"an empty database: loading the synthetic sample of {settings.data_dir}"
              " (made by `dataarch generate`; not real data)")  # fmt: skip
        status = loading.migrate_dir(settings, settings.data_dir, PLAIN, settings.migrate_sessions)
    if status == 0:
        status = write_reports(argparse.Namespace(year=None, out=None), settings)
    with db.connect(settings) as conn:
        held = ", ".join(f"{_count(conn, table)} {table}" for table in read_dictionary(conn).names)
        rejected = _count(conn, "ingest_errors")
    print(f"database holds {held}; {rejected} rejected rows logged")
    print(f"psql: psql '{db.url(settings)}'")
    if status or args.no_serve:
        return status
    return run_serve(args, settings)


def _holds_data(settings: Settings) -> bool:
    """Rows in a table, or a batch in the log: then it is someone's data."""
    with db.connect(settings) as conn:
        tables = [*read_dictionary(conn).names, "ingest_batches"]
        return any(
            conn.execute(SQL("select exists (select from {})").format(Identifier(t))).fetchone()[0]
            for t in tables
        )


def _count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(SQL("select count(*) from {}").format(Identifier(table))).fetchone()[0]


COMMANDS = {
    "serve": (add_serve_arguments, run_serve),
    "up": (add_up_arguments, run_up),
}
