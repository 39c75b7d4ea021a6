"""The service as users run it: `dataarch serve` under uvicorn, and the
`dataarch ingest` client against it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from conftest import (
    JSON_AUTH,
    PROJECT,
    SEED_DATA,
    cli_env,
    dataarch,
    employee,
    load_reference_rows,
    requires_seed_data,
    start_server,
)

from dataarch.db import API_ROLE
from dataarch.generate import generate
from dataarch.installer import install
from dataarch.pgserver import Cluster


@pytest.fixture
def server(conn, dsn) -> Iterator[str]:
    proc, url = start_server(dsn)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def run_client(dsn: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dataarch.cli", *args, "--url", url],
        env=cli_env(dsn), cwd=PROJECT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@requires_seed_data()
def test_client_uploads_the_real_challenge_file(server, dsn, conn) -> None:
    folder = SEED_DATA / "globant"
    for table, name in [("departments", "departments"), ("jobs", "jobs")]:
        done = run_client(dsn, server, "ingest", table, str(folder / f"{name}.csv"))
        assert done.returncode == 0, done.stderr
    done = run_client(dsn, server, "ingest", "employees", str(folder / "hired_employees.csv"))
    assert done.returncode == 0, done.stderr
    assert "sent 1999 rows in 2 batches: 1929 inserted, 70 rejected" in done.stdout
    assert "missing_field: 70" in done.stdout
    assert conn.execute("select count(*) from employees").fetchone()[0] == 1929


def test_client_batches_and_a_rerun_inserts_nothing_twice(server, dsn, conn, tmp_path) -> None:
    generate(tmp_path, employees=2500, bad_ratio=0.02)
    for table, name in [("departments", "departments"), ("jobs", "jobs")]:
        assert (
            run_client(dsn, server, "ingest", table, str(tmp_path / f"{name}.csv")).returncode == 0
        )
    path = str(tmp_path / "hired_employees.csv")
    first = run_client(dsn, server, "ingest", "employees", path)
    assert first.returncode == 0, first.stderr
    assert "sent 2500 rows in 3 batches" in first.stdout
    stored = conn.execute("select count(*) from employees").fetchone()[0]
    batches = conn.execute("select count(*) from ingest_batches").fetchone()[0]
    # a second run sends again, and the rows already there are rejected and logged
    second = run_client(dsn, server, "ingest", "employees", path)
    assert "sent 2500 rows in 3 batches: 0 inserted, 2500 rejected" in second.stdout
    repeats = int(first.stdout.split("duplicate_id: ")[1].split()[0])  # across batches
    assert f"duplicate_id: {stored + repeats}" in second.stdout
    assert conn.execute("select count(*) from employees").fetchone()[0] == stored
    assert conn.execute("select count(*) from ingest_batches").fetchone()[0] == batches + 3


def test_client_exits_non_zero_when_refused(server, dsn, tmp_path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("1,Data engineer\n")
    done = run_client(dsn, server, "ingest", "jobs", str(path), "--token", "wrong")
    assert done.returncode == 1
    assert "refused batch 1: HTTP 401" in done.stdout


def test_get_and_rejections_commands(server, dsn, conn) -> None:
    load_reference_rows(conn)
    httpx.post(f"{server}/tables/jobs/rows", headers=JSON_AUTH, json=[{"job_id": 0}])
    got = run_client(dsn, server, "get", "jobs", "2")
    assert got.returncode == 0 and '"job_name": "Job 2"' in got.stdout
    missing = run_client(dsn, server, "get", "jobs", "99")
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr
    listed = run_client(dsn, server, "rejections", "jobs")
    assert "out_of_range" in listed.stdout and "1 of 1 shown" in listed.stdout


def test_concurrent_overlapping_posts(server, conn) -> None:
    load_reference_rows(conn)
    statuses: list[int] = []
    inserted: list[int] = []

    def client(offset: int) -> None:
        with httpx.Client(base_url=server, headers=JSON_AUTH, timeout=60) as http:
            for round_ in range(10):
                start = offset * 50 + round_ * 25
                rows = [employee(i) for i in range(start + 1, start + 301)]
                response = http.post("/tables/employees/rows", json=rows)
                statuses.append(response.status_code)
                inserted.append(response.json()["inserted"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * 60
    stored, distinct = conn.execute(
        "select count(*), count(distinct employee_id) from employees"
    ).fetchone()
    assert stored == distinct == sum(inserted)
    logged = conn.execute("select count(*), count(*) filter (where reason_code = 'duplicate_id')"
                          " from ingest_errors").fetchone()  # fmt: skip
    assert logged[0] == logged[1] == 60 * 300 - stored


def test_database_down_is_503_and_the_service_recovers(tmp_path) -> None:
    tmp_path.chmod(0o755)
    cluster = Cluster(tmp_path / "pg", durable=False)
    cluster.start()
    try:
        cluster.ensure_database("outage")
        dsn = cluster.conninfo("outage")
        with psycopg.connect(dsn) as conn:
            install(conn)
        proc, url = start_server(dsn)
        try:
            rows = [{"department_id": 1, "department_name": "Sales"}]
            post = lambda: httpx.post(f"{url}/tables/departments/rows", headers=JSON_AUTH,  # noqa: E731
                                      json=rows, timeout=30)  # fmt: skip
            assert post().status_code == 200
            cluster.stop()
            down = post()
            assert down.status_code == 503
            assert down.json()["detail"].startswith("the database is unavailable")
            assert httpx.get(f"{url}/health", timeout=30).status_code == 503
            cluster.start()
            deadline = time.monotonic() + 30
            while (status := httpx.get(f"{url}/health", timeout=30).status_code) != 200:
                assert time.monotonic() < deadline, "service did not recover"
                time.sleep(0.2)
            assert status == 200
            assert post().json()["rejections"][0]["reason_code"] == "duplicate_id"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        cluster.destroy()


def test_connections_the_server_dropped_are_replaced_unseen(server, conn) -> None:
    """The pool hands out only live connections: after the database ends
    every session of the API (as a restart does), the next requests still
    succeed, none with a 503."""
    load_reference_rows(conn)
    conn.commit()

    def post(first_id: int) -> int:
        rows = [employee(i) for i in range(first_id, first_id + 10)]
        return httpx.post(f"{server}/tables/employees/rows", headers=JSON_AUTH, json=rows,
                          timeout=30).status_code  # fmt: skip

    assert [post(k * 10 + 1) for k in range(4)] == [200] * 4  # the pool holds several now
    ended = conn.execute(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity where usename = %s",
        (API_ROLE,),
    ).fetchone()[0]
    conn.commit()
    assert ended >= 2
    time.sleep(0.2)  # the sessions have closed their sockets
    assert [post(k * 10 + 1) for k in range(4, 10)] == [200] * 6


# -- the client sends; it never replays a batch of another run -----------------------


def _employees_file(path, ids: range) -> str:
    path.write_text("".join(f"{i},Person {i},2021-03-01T00:00:00Z,1,1\n" for i in ids))
    return str(path)


def test_a_file_holding_its_lines_twice_sends_them_twice(server, dsn, conn, tmp_path) -> None:
    load_reference_rows(conn)
    twice = tmp_path / "twice.csv"
    lines = "".join(f"{i},Person {i},2021-03-01T00:00:00Z,1,1\n" for i in range(1, 1001))
    twice.write_text(lines + lines)
    done = run_client(dsn, server, "ingest", "employees", str(twice))
    assert "sent 2000 rows in 2 batches: 1000 inserted, 1000 rejected" in done.stdout, done.stdout
    assert "duplicate_id: 1000" in done.stdout
    logged = conn.execute(
        "select count(*) from ingest_errors where reason_code = 'duplicate_id'"
    ).fetchone()[0]
    assert logged == 1000 == conn.execute("select count(*) from employees").fetchone()[0]


def test_a_file_sent_again_after_a_restore_is_inserted_again(server, dsn, conn, tmp_path) -> None:
    load_reference_rows(conn)
    backups = {"DATAARCH_BACKUP_DIR": str(tmp_path / "backups")}
    assert dataarch(dsn, "backup", "employees", **backups).returncode == 0
    late = _employees_file(tmp_path / "late.csv", range(1, 1501))
    first = run_client(dsn, server, "ingest", "employees", late)
    assert "1500 inserted" in first.stdout
    restored = dataarch(dsn, "restore", "employees", **backups)
    assert restored.returncode == 0, restored.stderr
    assert conn.execute("select count(*) from employees").fetchone()[0] == 0
    again = run_client(dsn, server, "ingest", "employees", late)
    assert "1500 inserted, 0 rejected" in again.stdout, again.stdout
    assert conn.execute("select count(*) from employees").fetchone()[0] == 1500


def test_a_restore_forgets_the_keys_of_the_tables_batches(server, dsn, conn, tmp_path) -> None:
    """A client's own Idempotency-Key, sent again after a restore removed its
    rows, applies the batch again instead of answering with the old response."""
    load_reference_rows(conn)
    backups = {"DATAARCH_BACKUP_DIR": str(tmp_path / "backups")}
    assert dataarch(dsn, "backup", "employees", **backups).returncode == 0
    headers = {**JSON_AUTH, "Idempotency-Key": "client-chosen-1"}
    body = [employee(7)]
    first = httpx.post(f"{server}/tables/employees/rows", json=body, headers=headers)
    assert first.json()["inserted"] == 1
    assert dataarch(dsn, "restore", "employees", **backups).returncode == 0
    again = httpx.post(f"{server}/tables/employees/rows", json=body, headers=headers)
    assert again.json()["inserted"] == 1 and "replayed" not in again.json()
    replay = httpx.post(f"{server}/tables/employees/rows", json=body, headers=headers)
    assert (
        replay.json()["replayed"] is True and replay.json()["batch_id"] == again.json()["batch_id"]
    )
