"""The `dataarch` command.

Each command is defined by a module (its COMMANDS table: name ->
(add_arguments, run)) that is imported only when that command runs:
`dataarch --help` starts in a fraction of a second, and an installation
without a layer (the Docker image has no bench/) runs every other command.

No traceback reaches a person: every failure is one or two lines on stderr
and an exit status: 0 done, 1 failed, 2 a usage mistake, 3 a server (the
database or the API) not running or not reachable, 4 busy (another
operation holds what this one needs; the message says which; nothing
changed), 130 interrupted. With DATAARCH_DEBUG=1 an unexpected error shows
its traceback as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
import traceback
from typing import NoReturn

DONE, FAILED, USAGE, NOT_RUNNING, BUSY, INTERRUPTED = 0, 1, 2, 3, 4, 130

# name -> (module, one line of help), in the order `dataarch --help` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("cli.commands.serving", "database, schema, one-time migration, then the API"),
    "db": ("cli.commands.database", "the database: start|stop|status|url|init|check"),
    "token": ("cli.commands.tokens", "API tokens for one client each: create|list|revoke"),
    "migrate": ("cli.commands.loading", "load CSV files (once per file content)"),
    "generate": ("cli.commands.loading", "write deterministic sample CSV files"),
    "serve": ("cli.commands.serving", "serve the HTTP API"),
    "ingest": ("cli.commands.api", "send a CSV file to the API, 1000 rows a request"),
    "upload": ("cli.commands.api", "send a CSV file to the API whole, loaded as migrate does"),
    "get": ("cli.commands.api", "one row by id, from the API"),
    "rejections": ("cli.commands.api", "rejections: list, `export TABLE`, `close ID...`"),
    "batches": ("cli.commands.batches", "what each load did: list, `show N`, `revert N`"),
    "lineage": ("cli.commands.batches", "where a row came from, and the rejections before"),
    "backup": ("backup.__main__", "write a backup set (every table, or those named)"),
    "verify": ("backup.__main__", "check backups: sizes, SHA-256, every record, checksums"),
    "restore": ("backup.__main__", "restore a table, or a whole set (--all), from a backup"),
    "backups": ("backup.__main__", "list backup sets and files"),
    "report": ("reports.__main__", "write the KPI and data-quality reports as HTML pages"),
    "bench": ("bench.__main__", "measure every path against its physical limit"),
}
log = logging.getLogger("cli")


def version() -> str:
    from dataarch import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake said in two lines instead of the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message}\n(`{self.prog} --help` says more)\n")


def build_parser(chosen: str | None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported to define its options."""
    parser = _Parser(
        prog="dataarch",
        description="PostgreSQL-centric migration and ingestion of the HR database.",
        epilog="exit status: 0 done, 1 failed, 2 usage, 3 database or API not running, 4 busy",
    )
    parser.add_argument("--version", action="version", version=f"dataarch {version()}")
    parser.add_argument(
        "--log-format", choices=("auto", "json", "human"),
        default=os.environ.get("DATAARCH_LOG_FORMAT", "auto"),
        help="json: the JSON log on stderr too (it always goes to var/log/dataarch.log);"
        " human or auto: stderr only says warnings and errors, in words",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            add_arguments, run = _load(module).COMMANDS[name]
            add_arguments(p)
            p.set_defaults(run=run)
    return parser


class Unavailable(RuntimeError):
    """The command's layer is not part of this installation."""


def _load(module: str):  # noqa: ANN202
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise Unavailable(f"this installation has no {exc.name}/ package") from None
        raise


def _spelled_out(argv: list[str]) -> list[str]:
    """`backup verify ...` is `verify ...`, as earlier releases spelled it."""
    for i, word in enumerate(argv):
        if not word.startswith("-") and (i == 0 or argv[i - 1] != "--log-format"):
            if argv[i : i + 2] == ["backup", "verify"]:
                return [*argv[:i], "verify", *argv[i + 2 :]]
            break
    return argv


def _chosen(argv: list[str]) -> str | None:
    for i, word in enumerate(argv):
        if word == "--log-format":
            continue
        if not word.startswith("-") and (i == 0 or argv[i - 1] != "--log-format"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = _spelled_out(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_chosen(argv))
    except Unavailable as exc:
        print(f"dataarch: {_chosen(argv)}: {exc}", file=sys.stderr)
        return USAGE
    args = parser.parse_args(argv)  # a usage mistake exits 2 with argparse's message
    try:
        return _run(args)
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # `dataarch batches | head`: the reader has what it wanted; say nothing
        # more (a flush at exit would raise again) and end well
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return DONE


def _run(args: argparse.Namespace) -> int:
    from dataarch import logs
    from dataarch.settings import Settings

    try:
        settings = dataclasses.replace(  # sessions say what they do: "dataarch migrate"
            Settings.from_env(), application_name=f"dataarch {args.command}"
        )
        logs.configure(settings.log_path, args.log_format)
        return args.run(args, settings)
    except BrokenPipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        status, message = explain(exc)
        print(f"dataarch: {message}", file=sys.stderr)
        if status == FAILED and _unexpected(exc):
            log.error("unexpected error", exc_info=exc)
            if os.environ.get("DATAARCH_DEBUG"):
                traceback.print_exception(exc)
        return status


def _unexpected(exc: BaseException) -> bool:
    return explain(exc)[1].startswith("unexpected")


BUSY_ADVICE = "nothing changed: try again when it has finished"


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for a failure: the CLI's one table of errors."""
    import psycopg

    from dataarch.errors import Failure, of_error

    if isinstance(exc, Failure):
        return exc.status, str(exc)
    if isinstance(exc, ValueError | FileNotFoundError):  # a bad option, variable or file
        return USAGE, str(exc)
    if isinstance(exc, psycopg.Error):  # the error catalogue decides (dataarch/errors.py)
        entry = of_error(exc)
        said = exc.diag.message_primary or str(exc).strip().splitlines()[0]
        if entry.busy:
            return entry.exit, f"{said}; {entry.hint or BUSY_ADVICE}"
        if entry.exit == NOT_RUNNING:
            return entry.exit, f"cannot reach the database: {said}"
        hint = f"; {entry.hint}" if entry.hint else ""
        return entry.exit, f"the database refused it: {said}{hint}"
    if isinstance(exc, OSError):
        return FAILED, f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}"
    return FAILED, f"unexpected error ({type(exc).__name__}: {exc}); DATAARCH_DEBUG=1 shows where"


if __name__ == "__main__":
    sys.exit(main())
