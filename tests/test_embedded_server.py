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
        [sys.executable, "-m", "cli", *args],
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
    assert "the database holds data: the synthetic sample is not loaded" in second.stdout
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
        [sys.executable, "-m", "cli", "db", "init"],
        capture_output=True, text=True, env=env, cwd=PROJECT, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3  # a server not running or not reachable
    assert proc.stderr.startswith("dataarch: cannot reach the database")
    assert "Traceback" not in proc.stderr


def _as_nobody(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", "psql", "-X", "-h", str(cluster.socket_dir),
         "-p", str(cluster.port), "-U", "postgres", "-d", "postgres", "-c", "select 1"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true",
                    reason="switching to another OS user needs root")  # fmt: skip
def test_another_os_user_is_refused(var_dir: Path) -> None:
    """Only who runs the cluster (and root) gets in: another local user
    cannot enter the socket's directory nor open the socket, and when it
    could, peer authentication would still refuse it."""
    cluster = Cluster(var_dir / "pg", durable=False)
    cluster.start()
    socket = cluster.socket_dir / f".s.PGSQL.{cluster.port}"
    assert cluster.socket_dir.stat().st_mode & 0o007 == 0  # nothing for others
    assert socket.stat().st_mode & 0o007 == 0
    refused = _as_nobody(cluster)
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused.stderr
    cluster.socket_dir.chmod(0o755)  # the file walls down: authentication holds
    socket.chmod(0o777)
    try:
        refused = _as_nobody(cluster)
    finally:
        cluster.socket_dir.chmod(0o2770)
        socket.chmod(0o770)
    assert refused.returncode != 0 and "Peer authentication failed" in refused.stderr
    with psycopg.connect(cluster.conninfo()) as conn:  # its owner (here: root) gets in
        assert conn.execute("select current_user").fetchone()[0] == "postgres"


def test_a_cluster_of_an_earlier_release_is_closed_at_its_next_start(var_dir: Path) -> None:
    """Clusters made with `trust` for every local user are converted when they start."""
    cluster = Cluster(var_dir / "pg", durable=False)
    cluster.init()
    hba = cluster.data_dir / "pg_hba.conf"
    hba.write_text("local all all trust\n")  # what earlier releases wrote
    cluster.start()
    assert "local all all peer map=dataarch" in hba.read_text()
    assert "trust" not in hba.read_text()
    url = run_cli(var_dir, "db", "url").stdout.strip()
    assert url.startswith("postgresql://postgres@/dataarch?host=")
