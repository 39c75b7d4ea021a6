"""The service as users run it: `dataarch serve` under uvicorn, and the
`dataarch ingest` client against it."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
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
    wait_until,
)

from dataarch.db import API_ROLE
from dataarch.generate import generate
from dataarch.installer import install
from dataarch.pgserver import Cluster


def run_client(dsn: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args, "--url", url],
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


def test_a_refused_token_stops_the_client_at_once(server, dsn, conn, tmp_path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text("".join(f"{i},Job {i}\n" for i in range(1, 3001)))  # three batches
    done = run_client(dsn, server, "ingest", "jobs", str(path), "--token", "wrong")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("HTTP 401") == 1 and "check --token" in done.stderr
    assert conn.execute("select count(*) from ingest_batches").fetchone()[0] == 0


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
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert "retry later" in down.json()["detail"]
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
        "select array_agg(pid) from pg_stat_activity where usename = %s", (API_ROLE,)
    ).fetchone()[0]
    conn.execute("select pg_terminate_backend(pid) from unnest(%s::int[]) as pid", (ended,))
    conn.commit()
    assert len(ended) >= 2

    def gone() -> bool:  # their backends have exited, closing the sockets
        found = conn.execute(
            "select not exists (select from pg_stat_activity where pid = any(%s))", (ended,)
        ).fetchone()[0]
        conn.commit()
        return found

    wait_until(gone, "the terminated sessions to end")
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


# -- CSV over HTTP -------------------------------------------------------------------------


def test_upload_loads_a_file_as_migrate_does(server, dsn, conn, tmp_path) -> None:
    generate(tmp_path, employees=3000, bad_ratio=0.05)
    for table, name in [("departments", "departments"), ("jobs", "jobs")]:
        done = run_client(dsn, server, "upload", table, str(tmp_path / f"{name}.csv"))
        assert done.returncode == 0, done.stderr
    quirks = tmp_path / "quirks.csv"
    quirks.write_bytes(
        (tmp_path / "hired_employees.csv").read_bytes()
        + b'90001,"Ann\nSmith",2021-01-01T00:00:00Z,1,1\n\\.\n'
        + b"90002,Jos\xe9,2021-01-01T00:00:00Z,1,1\n"
    )
    done = run_client(dsn, server, "upload", "employees", str(quirks))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    uploaded = conn.execute(
        "select line_number, reason_code, raw_line from ingest_errors"
        " where source = 'csv:quirks.csv' order by 1"
    ).fetchall()
    counts = conn.execute(
        "select submitted, inserted, rejected from ingest_batches where source = 'csv:quirks.csv'"
    ).fetchone()
    assert counts[0] == counts[1] + counts[2] and uploaded[-2:] == [
        (3003, "malformed_line", "\\."),
        (3004, "malformed_line", "90002,Jos\\xe9,2021-01-01T00:00:00Z,1,1"),
    ]
    assert conn.execute(
        "select employee_name from employees where employee_id = 90001"
    ).fetchone() == ("Ann\nSmith",)
    # the same lines migrated from disk are judged the same way
    conn.execute("truncate employees")
    migrated = dataarch(dsn, "migrate", "--csv-dir", str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    judged = (
        "select line_number, reason_code from ingest_errors"
        " where source = %s and line_number <= 3000 order by 1, 2"
    )
    assert (
        conn.execute(judged, ("csv:quirks.csv",)).fetchall()
        == conn.execute(judged, ("csv:hired_employees.csv",)).fetchall()
    )
    again = run_client(dsn, server, "upload", "employees", str(quirks))
    assert "already migrated" in again.stdout


def test_an_upload_over_the_limit_is_413(dsn, conn, tmp_path) -> None:
    proc, url = start_server(dsn, DATAARCH_UPLOAD_MAX_BYTES="1000")
    try:
        body = b"1,Sales\n" * 500
        headers = {**JSON_AUTH, "Content-Type": "text/csv"}
        announced = httpx.post(f"{url}/tables/departments/csv", content=body, headers=headers)
        assert announced.status_code == 413 and "DATAARCH_UPLOAD_MAX_BYTES" in announced.text
        streamed = httpx.post(f"{url}/tables/departments/csv", headers=headers,
                              content=iter([body[:800], body[800:]]))  # fmt: skip
        assert streamed.status_code == 413
        small = httpx.post(f"{url}/tables/departments/csv", content=b"1,Sales\n", headers=headers)
        assert small.status_code == 200 and small.json()["inserted"] == 1
        wrong = httpx.post(f"{url}/tables/departments/csv", content=b"1,Sales\n", headers=JSON_AUTH)
        assert wrong.status_code == 415
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert conn.execute("select count(*) from departments").fetchone()[0] == 1


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_a_million_line_upload_streams(dsn, conn, tmp_path) -> None:
    """The body is never held whole: the server stays under 300 MB."""
    generate(tmp_path, employees=1_000_000, bad_ratio=0.01)
    proc, url = start_server(dsn)
    peak, done = [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for table in ("departments", "jobs"):
            assert (
                run_client(dsn, url, "upload", table, str(tmp_path / f"{table}.csv")).returncode
                == 0
            )
        result = run_client(dsn, url, "upload", "employees", str(tmp_path / "hired_employees.csv"))
    finally:
        done.set()
        sampler.join()
        proc.terminate()
        proc.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert "1000000 lines" in result.stdout
    assert conn.execute("select count(*) from employees").fetchone()[0] > 980_000
    print(f"server peak RSS {peak[0]:.0f} MB")
    assert 0 < peak[0] < 300, peak


def test_ingest_reads_any_file_without_a_traceback(server, dsn, conn, tmp_path) -> None:
    load_reference_rows(conn)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"1,Jos\xe9,2021-01-01T00:00:00Z,1,1\n2,Ann,2021-01-01T00:00:00Z,1,1\n")
    done = run_client(dsn, server, "ingest", "employees", str(latin))
    assert done.returncode == 0 and "1 inserted, 1 rejected" in done.stdout, done.stderr
    again = run_client(dsn, server, "ingest", "employees", str(latin), "--encoding", "latin1")
    assert "1 inserted" in again.stdout
    assert conn.execute("select employee_name from employees where employee_id = 1").fetchone() == (
        "José",
    )
    zipped = tmp_path / "zipped.csv.gz"
    zipped.write_bytes(gzip.compress(b"3,Gz,2021-01-01T00:00:00Z,1,1\n"))
    assert "1 inserted" in run_client(dsn, server, "ingest", "employees", str(zipped)).stdout
    long = tmp_path / "long.csv"
    long.write_text(f'4,"{"x" * 200_000}",2021-01-01T00:00:00Z,1,1\n')
    done = run_client(dsn, server, "ingest", "employees", str(long))
    assert "too_long: 1" in done.stdout and "Traceback" not in done.stderr
    missing = run_client(dsn, server, "ingest", "employees", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_the_client_commands_find_the_server_where_it_serves(conn, dsn, tmp_path) -> None:
    """`serve --port N` says where it serves (var/api-url); `get` needs no --url."""
    load_reference_rows(conn)
    conn.commit()
    var = {"DATAARCH_VAR_DIR": str(tmp_path / "var")}
    proc, url = start_server(dsn, **var)
    try:
        assert json.loads((tmp_path / "var" / "api-url").read_text())["url"] == url
        found = dataarch(dsn, "get", "jobs", "1", **var)
        assert found.returncode == 0 and '"job_id": 1' in found.stdout, found.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    gone = dataarch(dsn, "get", "jobs", "1", **var)  # its process is gone: no waiting
    assert gone.returncode == 3 and url in gone.stderr and "retrying" not in gone.stderr
