"""python -m reports [--year 2021] [--out DIR]: write the report pages."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataarch import db
from dataarch.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--year", type=int, help="the year of hires the KPI pages show (default: the newest)"
    )
    parser.add_argument("--out", help="output directory (default var/reports)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from reports import write_reports

    out = Path(args.out) if args.out else settings.reports_dir
    with db.connect(settings, autocommit=True) as conn:
        years = [y for (y,) in conn.execute(
            "select distinct hire_year from hire_counts where hires > 0 order by 1")]  # fmt: skip
        year = args.year or (years[-1] if years else 2021)
        if args.year and year not in years:
            having = ", ".join(map(str, years)) or "none yet"
            raise ValueError(f"no hires in {year}: no report written (years with hires: {having})")
        for path in write_reports(conn, year, out):
            print(f"wrote {path}")
    return 0


COMMANDS = {"report": (add_arguments, run)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv), Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
