"""The commands that talk to the HTTP API: ingest, upload, get, rejections.
httpx is imported with this module, so other commands start without it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.commands.loading import add_csv_options, dialect
from dataarch import client, migrate
from dataarch.errors import Failure
from dataarch.output import status
from dataarch.rejects import Rejected, reject_files
from dataarch.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
TABLE_HELP = "a table of the server's data dictionary (GET /dictionary)"


class Refused(Failure):
    """The API refused the request (the message is its answer)."""


def add_client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="the API's address (default: DATAARCH_URL, else where `dataarch serve` says it"
        f" serves, in var/api-url, else {DEFAULT_URL})",
    )
    p.add_argument("--token", help="API token (default: DATAARCH_API_TOKEN or var/api-token)")
    p.add_argument("--retry-for", type=float, metavar="SECONDS",
                   default=float(os.environ["DATAARCH_RETRY_FOR"])
                   if os.environ.get("DATAARCH_RETRY_FOR") else None,
                   help="how long to retry while the API does not answer (default: 20 while"
                   " the server of var/api-url is starting, else none: a wrong address fails"
                   " at once)")  # fmt: skip


def address(args: argparse.Namespace, settings: Settings) -> tuple[str, float]:
    """Where the API is, and how long to wait for it: --url, DATAARCH_URL,
    the address `serve` wrote (waited for only while that server runs), or
    the default; --retry-for (DATAARCH_RETRY_FOR) decides the wait when given."""
    url, starting = args.url or os.environ.get("DATAARCH_URL"), False
    if not url:
        url, starting = served_address(settings)
    return url, args.retry_for if args.retry_for is not None else (20.0 if starting else 0.0)


def served_address(settings: Settings) -> tuple[str, bool]:
    """(the address in var/api-url, whether its server process runs), or the default."""
    try:
        found = json.loads(settings.address_file.read_text())
        url, pid = str(found["url"]), int(found["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL, False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return url, False
    except PermissionError:
        pass  # another user's process: it runs
    return url, True


def with_api(args: argparse.Namespace, settings: Settings, work: Callable[[Any], int]) -> int:
    """Run `work` with an API client; a refusal becomes Refused (one line)."""
    token = args.token or settings.with_generated_token().api_tokens[0]
    say = lambda text: print(f"dataarch: {text}", file=sys.stderr, flush=True)  # noqa: E731
    url, retry_for = address(args, settings)
    with client.ApiClient(url, token, retry_for, on_retry=say) as api:
        try:
            return work(api)
        except client.ApiError as exc:
            hint = {401: "; check --token or DATAARCH_API_TOKEN",
                    403: "; this token's scope does not allow it"}.get(exc.status, "")  # fmt: skip
            raise Refused(f"{exc}{hint}") from None


def _input_file(name: str) -> Path:
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return path


def add_file_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help=TABLE_HELP)
    p.add_argument("file")
    p.add_argument("--force", action="store_true",
                   help="send it even when its name or header names another table")  # fmt: skip
    add_csv_options(p)
    add_client_options(p)


def _refuse_another_tables_file(
    api: client.ApiClient, args: argparse.Namespace, path: Path
) -> None:
    """An unknown table, or a file named for another table (unless --force),
    is refused before a byte of the file is sent."""
    api.table(args.table)
    if not args.force:
        migrate.refuse_a_file_named_for_another_table(api.dictionary(), args.table, path.name)


def run_ingest(args: argparse.Namespace, settings: Settings) -> int:
    path = _input_file(args.file)

    def work(api: client.ApiClient) -> int:
        _refuse_another_tables_file(api, args, path)
        with status(path.name) as line:
            summary = client.ingest_file(api, args.table, path, dialect(args), line.bar)
        print(client.describe(summary))
        return 1 if summary.refused else 0

    return with_api(args, settings, work)


def run_upload(args: argparse.Namespace, settings: Settings) -> int:
    path = _input_file(args.file)

    def work(api: client.ApiClient) -> int:
        _refuse_another_tables_file(api, args, path)  # the server would too, once it is sent
        with status(path.name) as line:
            summary = client.upload_file(
                api, args.table, path, dialect(args), line.bar, force=args.force
            )
        print(migrate.describe(summary))
        return 0

    return with_api(args, settings, work)


def add_get_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help=TABLE_HELP)
    p.add_argument("id")
    add_client_options(p)


def run_get(args: argparse.Namespace, settings: Settings) -> int:
    def work(api: client.ApiClient) -> int:
        row = api.request("GET", f"/tables/{api.table(args.table)}/rows/{args.id}")
        print(json.dumps(row, indent=2))
        return 0

    return with_api(args, settings, work)


def add_rejections_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="+", metavar="TABLE | export TABLE | close ID...")
    p.add_argument("--batch", type=int, help="only those of this batch")
    p.add_argument("--open", action="store_true", help="only open ones (not resolved or closed)")
    p.add_argument("--status", choices=["open", "resolved", "closed"], help="only these")
    p.add_argument("--reason", help="only this reason code")
    p.add_argument("--since", help="only those received since (ISO 8601 date-time)")
    p.add_argument("--limit", type=int, default=50, help="how many to list (default 50)")
    p.add_argument("--offset", type=int, default=0, help="how many newest ones to skip")
    p.add_argument("--out", help="export: the directory for TABLE.reject.csv and .reject.log")
    p.add_argument("--note", help="close: why they are closed")
    p.add_argument("--by", help="close: who closes them (default: $USER)")
    add_client_options(p)


def run_rejections(args: argparse.Namespace, settings: Settings) -> int:
    """`rejections TABLE`, `rejections export TABLE --out DIR`, `rejections close ID...`."""
    verb, *rest = args.words
    if verb == "close":
        if not rest or not all(w.isdigit() for w in rest) or not args.note:
            raise ValueError("usage: dataarch rejections close ID... --note TEXT")
        return _close(args, settings, [int(w) for w in rest])
    if verb == "export":
        if len(rest) != 1 or not args.out:
            raise ValueError("usage: dataarch rejections export TABLE --out DIR")
        return _export(args, settings, rest[0])
    if rest:
        raise ValueError(f"unexpected {' '.join(rest)!r}: dataarch rejections TABLE [options]")
    params = {"limit": args.limit, "offset": args.offset, **_filters(args)}

    def work(api: client.ApiClient) -> int:
        page = api.request("GET", f"/tables/{api.table(verb)}/rejections", params=params)
        for item in page["items"]:
            where = item["row_index"] if item["line_number"] is None else item["line_number"]
            print(f"#{item['error_id']} batch {item['batch_id']} at {where}: {item['status']}:"
                  f" {item['reason_code']}: {item['message']}")  # fmt: skip
        print(f"{len(page['items'])} of {page['total']} shown")
        return 0

    return with_api(args, settings, work)


def _filters(args: argparse.Namespace) -> dict[str, object]:
    found = {"batch_id": args.batch, "reason": args.reason, "since": args.since,
             "status": "open" if args.open else args.status}  # fmt: skip
    return {k: v for k, v in found.items() if v is not None}


def _export(args: argparse.Namespace, settings: Settings, table: str) -> int:
    def work(api: client.ApiClient) -> int:
        api.table(table)
        items: list[dict] = []
        while True:
            page = api.request("GET", f"/tables/{table}/rejections", params={
                **_filters(args), "limit": 1000, "offset": len(items)})  # fmt: skip
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                break
        rows = [
            Rejected(i["batch_id"], i["source"], i["line_number"] or i["row_index"],
                     i["raw_line"], i["raw_row"], i["reason_code"], i["field"], i["message"])
            for i in sorted(items, key=lambda i: i["error_id"])
        ]  # fmt: skip
        records, log_text, written = reject_files(rows, api.dictionary()[table].columns)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{table}.reject.csv").write_text(records, encoding="utf-8")
        (out / f"{table}.reject.log").write_text(log_text, encoding="utf-8")
        print(f"{out / f'{table}.reject.csv'}: {written} record(s) to fix and send again")
        print(f"{out / f'{table}.reject.log'}: why each was rejected ({len(rows)} in all)")
        return 0

    return with_api(args, settings, work)


def _close(args: argparse.Namespace, settings: Settings, ids: list[int]) -> int:
    body = {"ids": ids, "note": args.note, "by": args.by or os.environ.get("USER")}

    def work(api: client.ApiClient) -> int:
        result = api.request("POST", "/rejections/close", json=body)
        print(f"closed: {', '.join(map(str, result['closed'])) or 'none'}")
        if result["not_open"]:
            not_open = ", ".join(map(str, result["not_open"]))
            print(f"not open (resolved or closed already): {not_open}")
        if result["unknown"]:
            print(f"no such rejection: {', '.join(map(str, result['unknown']))}")
        return 0 if not result["unknown"] else 1

    return with_api(args, settings, work)


COMMANDS = {
    "ingest": (add_file_arguments, run_ingest),
    "upload": (add_file_arguments, run_upload),
    "get": (add_get_arguments, run_get),
    "rejections": (add_rejections_arguments, run_rejections),
}
