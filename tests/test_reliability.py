"""Proof that the promises hold under hostile input, load and faults:
- 2000+ hostile batches keep inserted + rejected = submitted (property test)
- 8 concurrent clients for 10 s: every id once, losers logged, no 5xx
- PostgreSQL SIGKILLed during an ingest, a migration and a restore; the API
  process SIGKILLed during a restore: every transaction is all or nothing
- schemathesis over the OpenAPI document: no 5xx, no response off-schema
- every protected route refuses a missing or wrong token; big bodies get 413
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import schemathesis
from conftest import (
    AUTH,
    JSON_AUTH,
    PROJECT,
    TOKEN,
    advisory_lock_held,
    cli_env,
    employee,
    load_reference_rows,
    served_clone,
    start_server,
    wait_until,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app import create_app
from dataarch.generate import generate
from dataarch.installer import install
from dataarch.pgserver import Cluster
from dataarch.settings import ApiToken, Settings

# -- hostile batches -------------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=30),  # includes NUL, surrogate-free unicode, controls
    st.just("שלום עולם"),  # right-to-left
    st.just("مرحبا"),
    st.just("e\u0301\u0301\u0301 Zalgo\u0336\u0337"),  # combining marks
    st.just("x" * 10_000),
    st.just("nul\x00inside"),
    st.just("   "),
)
HOSTILE_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.integers(1, 400),
    st.floats(allow_nan=False, allow_infinity=False),
    HOSTILE_TEXT,
    st.just("2021-02-29T00:00:00Z"),
    st.just("2021-07-27T16:02:08+05:30"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
COLUMNS = ["employee_id", "employee_name", "hiring_date", "department_id", "job_id"]


@st.composite
def hostile_row(draw: st.DrawFn) -> list[tuple[str, object]]:
    """A row as (key, value) pairs: keys may repeat (JSON allows it; the last wins)."""
    good = employee(draw(st.integers(1, 400)), department_id=draw(st.integers(1, 3)))
    bad_share = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    pairs = []
    for column in COLUMNS:
        if draw(st.floats(0, 1)) >= bad_share:
            pairs.append((column, good[column]))
        elif draw(st.integers(0, 8)) != 0:  # else: the column is missing
            pairs.append((column, draw(HOSTILE_VALUE)))
    if draw(st.integers(0, 15)) == 0:
        pairs.append((draw(st.sampled_from(COLUMNS + ["surplus"])), draw(HOSTILE_VALUE)))
    return pairs


def as_json(rows: list[list[tuple[str, object]]]) -> str:
    return "[" + ",".join(
        "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in row) + "}" for row in rows
    ) + "]"  # fmt: skip


def accepted_id(row: list[tuple[str, object]]) -> int:
    value = dict(row)["employee_id"]  # the last occurrence, as jsonb keeps it
    return int(value) if isinstance(value, int | float) else int(str(value).strip())


@settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(hostile_row(), min_size=1, max_size=12))
def test_hostile_batches_keep_every_promise(conn, batch) -> None:
    if not conn.execute("select exists (select from departments)").fetchone()[0]:
        load_reference_rows(conn)
    before = {r[0] for r in conn.execute("select employee_id from employees").fetchall()}
    result = conn.execute(
        "select ingest_batch_json('employees', %s, 'per_row', 'api')", (as_json(batch),)
    ).fetchone()[0]
    assert result["inserted"] + result["rejected"] == result["submitted"] == len(batch)
    rejected = {r["index"]: r["reason_code"] for r in result["rejections"]}
    known = {r[0] for r in conn.execute("select reason_code from reason_codes").fetchall()}
    assert set(rejected.values()) <= known and None not in rejected.values()
    ids = [accepted_id(row) for i, row in enumerate(batch) if i not in rejected]
    assert len(ids) == len(set(ids)) and not set(ids) & before
    after = {r[0] for r in conn.execute("select employee_id from employees").fetchall()}
    assert after == before | set(ids)
    logged = conn.execute(
        "select row_index from ingest_errors where batch_id = %s", (result["batch_id"],)
    ).fetchall()
    assert sorted(r[0] for r in logged) == sorted(rejected)  # nothing inserted is logged


# -- concurrency -----------------------------------------------------------------------


def test_eight_clients_for_ten_seconds(conn, dsn) -> None:
    load_reference_rows(conn)
    proc, url = start_server(dsn)
    statuses: list[int] = []
    stop = time.monotonic() + 10

    def client(seed: int) -> None:
        with httpx.Client(base_url=url, headers=JSON_AUTH, timeout=60) as http:
            n = 0
            while time.monotonic() < stop:
                first = (seed * 37 + n * 101) % 5000  # overlapping windows of ids
                rows = [employee(i) for i in range(first + 1, first + 201)]
                statuses.append(http.post("/tables/employees/rows", json=rows).status_code)
                n += 1

    try:
        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(statuses) > 16 and set(statuses) == {200}
    stored, distinct = conn.execute(
        "select count(*), count(distinct employee_id) from employees"
    ).fetchone()
    assert stored == distinct
    submitted, inserted, rejected = conn.execute(
        "select sum(submitted), sum(inserted), sum(rejected) from ingest_batches"
        " where table_name = 'employees'"
    ).fetchone()
    assert submitted == len(statuses) * 200 and inserted == stored
    reasons = conn.execute("select reason_code, count(*) from ingest_errors"
                           " where table_name = 'employees' group by 1").fetchall()  # fmt: skip
    assert reasons == [("duplicate_id", rejected)] or rejected == 0


# -- faults ----------------------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[tuple[Cluster, str]]:
    """A cluster of the test's own, to crash at will. Durable: with synchronous_commit
    off, a crash may lose commits the server had already acknowledged."""
    tmp_path.chmod(0o755)
    cluster = Cluster(tmp_path / "pg", durable=True)
    cluster.start()
    cluster.ensure_database("faults")
    dsn = cluster.conninfo("faults")
    with psycopg.connect(dsn) as conn:
        install(conn)
    yield cluster, dsn
    cluster.destroy()


def crash_and_restart(cluster: Cluster) -> None:
    cluster.kill()  # returns once every server process is gone
    cluster.start()


def wait_for_copy(dsn: str, proc: subprocess.Popen | None = None) -> None:
    """Until some COPY in the database has moved rows."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while not watcher.execute(
            "select count(*) from pg_stat_progress_copy where tuples_processed > 0"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the COPY never started"
            assert proc is None or proc.poll() is None, "the process ended before the COPY"
            time.sleep(0.005)


def test_sigkill_during_ingest_keeps_whole_batches(own_cluster) -> None:
    cluster, dsn = own_cluster
    with psycopg.connect(dsn, autocommit=True) as conn:
        load_reference_rows(conn)
    proc, url = start_server(dsn)
    outcomes: dict[int, int] = {}
    try:

        def send(k: int) -> None:
            rows = [employee(i) for i in range(k * 1000 + 1, k * 1000 + 1001)]
            try:
                outcomes[k] = httpx.post(f"{url}/tables/employees/rows", headers=JSON_AUTH,
                                         json=rows, timeout=30).status_code  # fmt: skip
            except httpx.TransportError:
                outcomes[k] = 0

        def send_until_refused() -> None:
            for k in range(500):
                send(k)
                if outcomes[k] != 200:
                    return

        sender = threading.Thread(target=send_until_refused)
        sender.start()
        wait_until(lambda: 200 in outcomes.values(), "a first batch to be answered")
        cluster.kill()
        sender.join(timeout=60)
        assert 503 in outcomes.values()  # the API said so while the database was down
        cluster.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the API did not recover by itself"
            time.sleep(0.2)
        send(1000)
        assert outcomes[1000] == 200  # served again, without a restart
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    with psycopg.connect(dsn) as conn:
        present = dict(
            conn.execute(
                "select (employee_id - 1) / 1000, count(*) from employees group by 1"
            ).fetchall()
        )
    for k, status in outcomes.items():
        assert present.get(k, 0) in (0, 1000), k  # all of a batch or none of it
        if status == 200:
            assert present.get(k) == 1000


def test_sigkill_during_migration_loads_nothing(own_cluster, tmp_path) -> None:
    cluster, dsn = own_cluster
    generate(tmp_path / "csv", employees=100_000, bad_ratio=0.01)
    env = {**cli_env(dsn), "DATABASE_URL": dsn}
    run = [sys.executable, "-m", "cli", "migrate", "--csv-dir", str(tmp_path / "csv")]
    with psycopg.connect(dsn, autocommit=True) as conn:
        proc = subprocess.Popen(run, env=env, cwd=PROJECT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 60
        while not conn.execute("select exists (select from migrated_files"
                               " where table_name = 'jobs')").fetchone()[0]:  # fmt: skip
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        # inside the employees file's transaction: it holds the table's load lock
        wait_until(
            lambda: (
                advisory_lock_held(conn, "hashtextextended('dataarch.load:employees', 0)")
                or proc.poll() is not None
            ),
            "the migration of the employees file to begin",
        )
        assert proc.poll() is None
    crash_and_restart(cluster)
    proc.wait(timeout=30)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from employees").fetchone()[0] == 0
        assert conn.execute("select count(*) from hire_counts").fetchone()[0] == 0
        files = conn.execute("select table_name from migrated_files order by 1").fetchall()
        assert files == [("departments",), ("jobs",)]
    again = subprocess.run(run, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from employees").fetchone()[0] > 95_000


def big_employees(dsn: str, tmp_path: Path) -> list[tuple]:
    from backup import backup_tables

    with psycopg.connect(dsn, autocommit=True) as conn:
        load_reference_rows(conn)
        conn.execute(
            "insert into employees select i, 'Person ' || i, '2021-01-01'::timestamptz"
            " + i * interval '1 minute', 1 + i %% 3, 1 + i %% 3 from generate_series(1, %s) i",
            (300_000,),
        )
        backup_tables(conn, ["employees"], tmp_path / "backups")
        conn.autocommit = True
        conn.execute("delete from employees where employee_id % 3 = 0")
        return conn.execute("select * from employees order by 1").fetchall()


def snapshot(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("select * from employees order by 1").fetchall()


def test_sigkill_during_restore_leaves_the_table(own_cluster, tmp_path) -> None:
    cluster, dsn = own_cluster
    before = big_employees(dsn, tmp_path)
    env = {**cli_env(dsn), "DATABASE_URL": dsn, "DATAARCH_BACKUP_DIR": str(tmp_path / "backups")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backup", "restore", "employees"],
        env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_copy(dsn, proc)
    crash_and_restart(cluster)
    proc.wait(timeout=30)
    assert snapshot(dsn) == before


def test_api_killed_during_restore_leaves_the_table(own_cluster, tmp_path) -> None:
    _, dsn = own_cluster
    before = big_employees(dsn, tmp_path)
    proc, url = start_server(dsn, DATAARCH_BACKUP_DIR=str(tmp_path / "backups"))
    failures: list[Exception] = []

    def restore_over_http() -> None:
        try:
            httpx.post(f"{url}/tables/employees/restore", headers=AUTH, timeout=60)
        except httpx.TransportError as exc:  # the server dies under the request
            failures.append(exc)

    request = threading.Thread(target=restore_over_http, daemon=True)
    try:
        request.start()
        wait_for_copy(dsn, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        request.join(timeout=30)
    finally:
        proc.kill()
    assert len(failures) == 1  # the restore never answered: it was cut off mid-load
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute("select count(*) from pg_stat_activity where query like"
                           " '%restore%' and pid <> pg_backend_pid()").fetchone()[0]:  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert snapshot(dsn) == before


# -- hostile HTTP ----------------------------------------------------------------------

_SCHEMA_APP = create_app(
    dataclasses.replace(Settings.from_env({}), tokens=(ApiToken(TOKEN, "admin"),))
)
SCHEMA = schemathesis.openapi.from_dict(_SCHEMA_APP.openapi_schema.to_schema())


@pytest.fixture(scope="module")
def schema_server(postgresql_proc, tmp_path_factory) -> Iterator[str]:
    """A server over a database of its own for the whole module."""
    with served_clone(postgresql_proc, "schemathesis", tmp_path_factory.mktemp("b")) as url:
        yield url


OPERATIONS = [
    (path, method.upper())
    for path, item in _SCHEMA_APP.openapi_schema.to_schema()["paths"].items()
    for method in item
]


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_openapi_fuzzing_finds_no_server_error(schema_server, path, method) -> None:
    """Cases drawn from each operation's schema; explicit parameters keep the
    collection the same with or without pytest-xdist."""

    @settings(max_examples=25, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=SCHEMA[path][method].as_strategy())
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            base_url=schema_server,
            headers=AUTH,
            checks=[not_a_server_error, response_schema_conformance],
        )

    fuzz()


PROTECTED = [
    (method.upper(), path.replace("{table}", "jobs").replace("{row_id}", "1")
     .replace("{page}", "index.html").replace("{batch_id}", "1"))
    for path, item in _SCHEMA_APP.openapi_schema.to_schema()["paths"].items()
    for method in item
    if not path.startswith("/health")
]  # fmt: skip


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_but_the_probes_needs_the_token(conn, dsn, method, path) -> None:
    from conftest import api_settings
    from litestar.testing import TestClient

    with TestClient(create_app(api_settings(dsn))) as client:
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            assert client.request(method, path, headers=headers).status_code == 401
        anonymous = client.request(method, path, follow_redirects=False)
        if path.startswith("/reports"):  # a browser is sent to the sign-in page
            assert anonymous.status_code == 303
            assert anonymous.headers["location"].startswith("/login?next=")
        else:
            assert anonymous.status_code == 401


def test_an_oversized_body_is_refused_before_it_is_read(conn, dsn) -> None:
    proc, url = start_server(dsn)
    try:
        port = int(url.rsplit(":", 1)[1])
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /tables/employees/rows HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 500000000\r\n\r\n[{"
            )  # 500 MB announced, 2 bytes sent: the answer must not wait for the rest
            answer = sock.recv(4096).decode()
        assert answer.startswith("HTTP/1.1 413")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
