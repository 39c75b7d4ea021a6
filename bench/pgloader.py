"""pgloader, the loader a PostgreSQL user picks for CSV files, as the bench's
peer: it loads the clean twin of the bench's employees file (pgloader 3.6
loses the rest of a batch when a foreign key fails, its issue #1333, so its
best case is the only fair one) into a database of the project's schema."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

# The setting: two workers, 25 000-row batches.
OPTIONS = "workers = 2, batch rows = 25000"
COLUMNS = "employee_id, employee_name, hiring_date, department_id, job_id"


# pgloader 3.6 on SBCL 2.2 sometimes dies as it starts, before it reads
# anything (its issue #1380: a race in its logger). A peer's own crash, not
# a figure: retried, then reported as "not measured".
KNOWN_CRASH = "Failed to start the monitor thread"
ATTEMPTS = 3  # the first try and at most two retries


class PgloaderFailed(RuntimeError):
    """pgloader exited with an error, or did not load every line."""


class PgloaderCrashed(PgloaderFailed):
    """pgloader died of its known start-up crash (KNOWN_CRASH)."""


def available() -> bool:
    return shutil.which("pgloader") is not None


def target_url(conninfo: str) -> tuple[str, dict[str, str]]:
    """pgloader's URL for a libpq conninfo, and the environment carrying its
    password (kept out of the command file). A unix socket directory is
    written pgloader's way: postgresql://user@unix:/dir:port/db."""
    params = conninfo_to_dict(conninfo)
    user, db = params.get("user", "postgres"), params.get("dbname", "postgres")
    host, port = params.get("host", "localhost"), params.get("port", "5432")
    where = f"unix:{host}" if host.startswith("/") else host
    env = {"PGPASSWORD": params["password"]} if params.get("password") else {}
    return f"postgresql://{user}@{where}:{port}/{db}", env


def command_file(csv_file: Path, url: str) -> str:
    return (
        f"LOAD CSV\n  FROM '{csv_file}' ({COLUMNS})\n  INTO {url}\n  TARGET TABLE employees\n"
        f"  TARGET COLUMNS ({COLUMNS})\n"
        f"  WITH {OPTIONS},\n       fields optionally enclosed by '\"',\n"
        "       fields escaped by double-quote,\n       fields terminated by ','\n;\n"
    )


def load(csv_file: Path, conninfo: str, work: Path) -> None:
    """Run pgloader once; raise PgloaderFailed, with its log's tail, on an error."""
    work.mkdir(parents=True, exist_ok=True)
    url, password = target_url(conninfo)
    commands = work / "employees.load"
    commands.write_text(command_file(csv_file, url))
    log = work / "pgloader.log"
    done = subprocess.run(
        ["pgloader", "--root-dir", str(work), "--logfile", str(log), str(commands)],
        env={**os.environ, **password}, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        tail = " | ".join(said.splitlines()[-5:])
        crash = PgloaderCrashed if KNOWN_CRASH in done.stderr + done.stdout else PgloaderFailed
        raise crash(f"pgloader exited with {done.returncode}: {tail}")


def load_retrying(
    csv_file: Path, conninfo: str, work: Path, say: Callable[[str], None] = print
) -> float:
    """load(), tried again (at most ATTEMPTS times in all) when pgloader dies
    of its known start-up crash, saying so each time; other failures at once.
    Returns the seconds the load that succeeded took (a crashed start is not
    pgloader's loading time)."""
    for attempt in range(1, ATTEMPTS + 1):
        started = time.perf_counter()
        try:
            load(csv_file, conninfo, work)
            return time.perf_counter() - started
        except PgloaderCrashed as crash:
            if attempt == ATTEMPTS:
                raise
            say(f"pgloader crashed as it started (its issue #1380), try {attempt} of"
                f" {ATTEMPTS}; trying again: {crash}")  # fmt: skip
    raise AssertionError("unreachable")
