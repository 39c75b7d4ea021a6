"""dataarch batches [show N | revert N] and dataarch lineage TABLE ID: what
each load did, where a row came from, and undoing a load. They ask the
database directly (procedures/090_lineage.sql), as the owner: no API needed."""

from __future__ import annotations

import argparse
import json

from dataarch import db
from dataarch.dictionary import read as read_dictionary
from dataarch.settings import Settings

KINDS = ("api", "psql", "csv", "retry", "restore", "revert")
TABLE_HELP = "a table of the data dictionary (`select data_dictionary()`)"


def add_batches_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs="*", metavar="[show N | revert N]",
                   help="nothing: list them, newest first; show N: one, with its rejections;"
                   " revert N: take out exactly the rows batch N inserted")  # fmt: skip
    p.add_argument("--table", help=f"list: only this table's ({TABLE_HELP})")
    p.add_argument("--source", choices=KINDS, help="list: only those that arrived this way")
    p.add_argument("--limit", type=int, default=50, help="list: how many (default 50)")
    p.add_argument("--dry-run", action="store_true", help="revert: say what, change nothing")
    p.add_argument(
        "--cascade", action="store_true",
        help="revert: first revert the batches whose rows reference its rows",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="the database's JSON, as it is")


def run_batches(args: argparse.Namespace, settings: Settings) -> int:
    verb, *rest = args.words or ["list"]
    if verb not in ("list", "show", "revert") or (verb != "list") != (len(rest) == 1):
        raise ValueError("usage: dataarch batches [--table T] [--source S] | show N | revert N")
    number = _batch_number(rest[0]) if rest else None
    with db.connect(settings, autocommit=True) as conn:
        if verb == "list":
            if args.table is not None:
                read_dictionary(conn).require(args.table)
            found = conn.execute(
                "select batches(%s, %s, %s)", (args.table, args.source, args.limit)
            ).fetchone()[0]
            return _say(args, found, lambda: _list(found))
        if verb == "show":
            found = conn.execute("select batch_detail(%s)", (number,)).fetchone()[0]
            if found is None:
                raise ValueError(f"no batch {number} (`dataarch batches` lists them)")
            return _say(args, found, lambda: _show(found))
        if args.dry_run:
            plan = conn.execute("select revert_plan(%s, %s)", (number, args.cascade)).fetchone()[0]
            return _say(args, plan, lambda: _plan(number, plan))
        done = conn.execute("select revert_batch(%s, %s)", (number, args.cascade)).fetchone()[0]
        return _say(args, done, lambda: _reverted(done))


def _batch_number(word: str) -> int:
    if not word.lstrip("#").isdigit():
        raise ValueError(f"{word!r} is not a batch number (`dataarch batches` lists them)")
    return int(word.lstrip("#"))


def _say(args: argparse.Namespace, found: dict, human) -> int:  # noqa: ANN001
    print(json.dumps(found, indent=2) if args.json else human())
    return 0


def describe_batch(b: dict) -> str:
    """One line for a batch: what, when, how many."""
    when = str(b["started_at"])[:19].replace("T", " ")
    counts = (
        f"removed {b['removed']}" if b["kind"] == "revert"
        else f"submitted {b['submitted']}, inserted {b['inserted']}, rejected {b['rejected']}"
    )  # fmt: skip
    also = f"  [reverted by #{b['reverted_by']}]" if b.get("reverted_by") else ""
    if b["kind"] == "revert":
        also = f"  [reverts #{b['reverts']}]"
    return f"#{b['batch_id']:<6} {b['table_name']:<11} {b['source']}  {when}  {counts}{also}"


def _list(page: dict) -> str:
    lines = [describe_batch(b) for b in page["items"]]
    lines.append(f"{len(page['items'])} of {page['total']} shown, newest first")
    return "\n".join(lines)


def _show(batch: dict) -> str:
    lines = [describe_batch(batch)]
    if batch.get("file"):
        lines.append(f"  file {batch['file']['name']} (sha256 {batch['file']['sha256']})")
    if batch.get("idempotency_key"):
        lines.append(f"  Idempotency-Key {batch['idempotency_key']}")
    if batch.get("request_id"):
        lines.append(f"  request {batch['request_id']}")
    lines.append(f"  {batch['present']} of its rows are in {batch['table_name']} now")
    for e in batch["rejections"]:
        place = e["line_number"] if e["line_number"] is not None else e["row_index"]
        lines.append(f"  rejection #{e['error_id']} at {place}: {e['status']}: {e['message']}")
    return "\n".join(lines)


def _plan(number: int, plan: dict) -> str:
    if plan["refused"]:
        return f"batch {number} would not be reverted: {plan['refused']} (--cascade reverts them)"
    lines = [f"would revert batch {s['batch_id']} ({s['table_name']}): {s['rows']} row(s)"
             for s in plan["batches"]]  # fmt: skip
    return "\n".join([*lines, "dry run: nothing changed"])


def _reverted(done: dict) -> str:
    return "\n".join(
        f"batch {r['reverts']} reverted ({r['table']}): {r['removed']} row(s) removed,"
        f" {r['reopened']} rejection(s) open again [batch {r['batch_id']}]"
        for r in done["reverted"]
    )


def add_lineage_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help=TABLE_HELP)
    p.add_argument("id", type=int, help="the row's id")
    p.add_argument("--json", action="store_true", help="the database's JSON, as it is")


def run_lineage(args: argparse.Namespace, settings: Settings) -> int:
    with db.connect(settings) as conn:
        read_dictionary(conn).require(args.table)
        found = conn.execute("select row_lineage(%s, %s)", (args.table, args.id)).fetchone()[0]
    if found is None:
        raise ValueError(f"no row in {args.table} with id {args.id}")
    return _say(args, found, lambda: _lineage(found))


def _lineage(found: dict) -> str:
    lines = [f"{found['table']} {found['id']}: {json.dumps(found['row'], ensure_ascii=False)}"]
    batch, where = found["batch"], found["position"] or {}
    if batch is None:
        lines.append("  loaded by an earlier release: no batch recorded")
    else:
        place = (
            f" line {where['line']} of {where['file']} (rejection #{where['rejection']}),"
            " retried in" if "rejection" in where
            else f" line {where['line']} of" if "line" in where
            else f" row {where.get('index')} of"
        )  # fmt: skip
        lines.append(f"  from{place} {describe_batch(batch)}")
        if batch.get("file"):
            lines.append(f"  file {batch['file']['name']} (sha256 {batch['file']['sha256']})")
        if batch.get("request_id"):
            lines.append(f"  request {batch['request_id']}")
    for e in found["rejections"]:  # the fix loop before it; attempts rejected since
        place = e["line_number"] if e["line_number"] is not None else e["row_index"]
        when = "before it" if batch is None or e["batch_id"] < batch["batch_id"] else "since"
        lines.append(f"  {when}: rejection #{e['error_id']} in batch {e['batch_id']} at {place}:"
                     f" {e['reason_code']} ({e['status']})")  # fmt: skip
    return "\n".join(lines)


COMMANDS = {
    "batches": (add_batches_arguments, run_batches),
    "lineage": (add_lineage_arguments, run_lineage),
}
