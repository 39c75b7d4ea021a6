"""The embedded cluster and the CLI around it, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dataarch.pgserver import Cluster

PROJECT = Path(__file__).resolve().parent.parent


def run_cli(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env["DATAARCH_VAR_DIR"] = str(var_dir)
    return subprocess.run(
        [sys.executable, "-m", "dataarch.cli", *args],
        capture_output=True, text=True, env=env, cwd=PROJECT, timeout=180,
    )  # fmt: skip


@pytest.fixture
def var_dir(tmp_path: Path):
    """A var/ directory inside a 0700 temp dir, like a fresh CI clone."""
    yield tmp_path / "var"
    Cluster(tmp_path / "var" / "pg").destroy()


def test_start_status_stop(var_dir: Path) -> None:
    cluster = Cluster(var_dir / "pg", durable=False)
    cluster.start()
    assert cluster.is_running()
    with psycopg.connect(cluster.conninfo()) as conn:
        encoding, collate, tz = conn.execute(
            "select pg_encoding_to_char(encoding), datcollate, current_setting('TimeZone')"
            " from pg_database where datname = current_database()"
        ).fetchone()
    assert (encoding, collate, tz) == ("UTF8", "C.UTF-8", "UTC")
    cluster.start()  # a second start is a no-op
    cluster.stop()
    assert not cluster.is_running()
    cluster.start()  # restarts on the existing data
    assert cluster.is_running()


def test_cli_up_twice_loads_once(var_dir: Path) -> None:
    first = run_cli(var_dir, "up", "--no-serve")
    assert first.returncode == 0, first.stderr
    assert "hired_employees.csv -> employees:" in first.stdout
    assert "inserted" in first.stdout
    second = run_cli(var_dir, "up", "--no-serve")
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already migrated") == 3
    assert first.stdout.splitlines()[-2] == second.stdout.splitlines()[-2]  # same counts

    status = run_cli(var_dir, "db", "status")
    assert status.returncode == 0 and "running" in status.stdout
    url = run_cli(var_dir, "db", "url").stdout.strip()
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from departments").fetchone()[0] == 12
    stopped = run_cli(var_dir, "db", "stop")
    assert stopped.returncode == 0
    assert run_cli(var_dir, "db", "status").returncode == 3


def test_cli_reports_an_unreachable_database(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"postgresql:///x?host={tmp_path}&connect_timeout=2"}
    proc = subprocess.run(
        [sys.executable, "-m", "dataarch.cli", "db", "init"],
        capture_output=True, text=True, env=env, cwd=PROJECT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3  # a server not running or not reachable
    assert proc.stderr.startswith("dataarch: cannot reach the database")
    assert "Traceback" not in proc.stderr
