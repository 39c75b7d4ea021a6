"""python -m bench [--rows N] [--bad-ratio R] [--json FILE] (also `dataarch bench`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="employee rows (default 1M)")
    parser.add_argument(
        "--bad-ratio", type=float, default=0.01,
        help="the share of the file's lines that break a rule (default 0.01)",
    )  # fmt: skip
    parser.add_argument("--sample", type=int, default=100_000,
                        help="rows for the row-at-a-time paths (naive insert, ingest)")  # fmt: skip
    parser.add_argument("--reps", type=int, default=3, help="repetitions; the median counts")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--citus", action="store_true",
                        help="also measure migrate, ingest, KPIs on local Citus")  # fmt: skip
    parser.add_argument(
        "--netns-delay-ms", type=float, metavar="MS",
        help="with --citus: each node in a network namespace of its own (root), a proxy"
        " adding MS milliseconds each way in front of each worker (bench/netns.py)",
    )  # fmt: skip


def run(args: argparse.Namespace, _settings: object = None) -> int:
    from bench.pgloader import PgloaderFailed
    from bench.run import Bench, BenchFailure, format_table

    if args.reps < 3:
        print("bench: --reps must be at least 3 (figures are medians)", file=sys.stderr)
        return 2
    if args.citus:
        from dataarch.citus import INSTALL_HINT, citus_installed

        if not citus_installed():
            print(f"bench: --citus: {INSTALL_HINT}", file=sys.stderr)
            return 2
    if args.netns_delay_ms is not None:
        from bench import netns

        why = "it needs --citus" if not args.citus else netns.available()
        if args.netns_delay_ms < 0:
            why = "the delay is a number of milliseconds, 0 or more"
        if why:
            print(f"bench: --netns-delay-ms: {why}", file=sys.stderr)
            return 2
    bench = Bench(
        args.rows, args.bad_ratio, min(args.sample, args.rows), args.reps, citus=args.citus,
        netns_delay_ms=args.netns_delay_ms,
    )  # fmt: skip
    kept = Path(args.json).with_suffix(".server.log") if args.json else Path("bench-server.log")
    try:
        result = bench.run(keep_server_log=kept)
    except BenchFailure as exc:
        tail = (
            "\n".join(kept.read_text(errors="replace").splitlines()[-20:]) if kept.exists() else ""
        )
        print(f"bench: {exc}\nthe server's log is {kept}; its last lines:\n{tail}", file=sys.stderr)
        return 1
    except PgloaderFailed as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


COMMANDS = {"bench": (add_arguments, run)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
