"""Concurrent batches: overlapping ids never deadlock, duplicate or get lost, and
references hold while departments are deleted."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import httpx
import psycopg
import pytest
from conftest import (
    JSON_AUTH,
    PROJECT,
    TOKEN,
    advisory_lock_held,
    cli_env,
    employee,
    ingest,
    load_reference_rows,
    problems,
    start_server,
    wait_until,
)


def test_overlapping_batches_in_parallel(conn, dsn) -> None:
    load_reference_rows(conn)
    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with psycopg.connect(dsn, autocommit=True) as own:
                for _ in range(15):
                    ids = rng.sample(range(1, 400), 200)  # random order, heavy overlap
                    barrier.wait(timeout=30)
                    results.append(ingest(own, "employees", [employee(i) for i in ids]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == 60

    inserted = sum(r["inserted"] for r in results)
    stored, distinct = conn.execute(
        "select count(*), count(distinct employee_id) from employees"
    ).fetchone()
    assert stored == distinct == inserted
    losers = conn.execute(
        "select count(*) filter (where reason_code = 'duplicate_id'), count(*) from ingest_errors"
    ).fetchone()
    assert losers[0] == losers[1] == sum(r["rejected"] for r in results)
    assert inserted + losers[1] == 60 * 200
    sums = conn.execute(
        "select sum(submitted), sum(inserted), sum(rejected) from ingest_batches"
        " where table_name = 'employees'"
    ).fetchone()
    assert sums == (12000, inserted, losers[1])


@pytest.mark.parametrize("other", ["commits", "rolls back"])
def test_a_batch_waits_for_the_batch_holding_one_of_its_ids(conn, dsn, other) -> None:
    """A batch finds the ids committed rows hold before it inserts; one that a
    concurrent batch holds, not yet committed, only the insert meets, and it
    waits: the row is duplicate_id once the other commits, inserted once the
    other rolls back, and the rest of the batch goes in either way."""
    load_reference_rows(conn)
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=True) as batch:
        assert ingest(holder, "employees", [employee(2)])["inserted"] == 1  # not committed
        pid = batch.info.backend_pid
        rows = [employee(1), employee(2), employee(3)]
        thread, outcome = _in_thread(lambda: ingest(batch, "employees", rows))
        assert _waits_for_a_lock(conn, pid), "the batch should wait for the other's id 2"
        holder.commit() if other == "commits" else holder.rollback()
        thread.join(timeout=30)
    result = outcome[0]
    assert not isinstance(result, BaseException), result
    if other == "commits":
        assert (result["inserted"], result["rejected"]) == (2, 1)
        assert [(r["index"], r["reason_code"], r["field"]) for r in result["rejections"]] == [
            (1, "duplicate_id", "employee_id")
        ]
    else:
        assert (result["inserted"], result["rejected"]) == (3, 0)
    assert conn.execute("select array_agg(employee_id order by employee_id) from employees"
                        ).fetchone()[0] == [1, 2, 3]  # fmt: skip
    assert problems(conn) == []


# -- references under concurrent deletes -------------------------------------------------
# ingest_batch checks references once per batch (the per-row foreign key triggers
# are skipped) and locks the referenced rows FOR KEY SHARE, as those triggers would.


def _orphans(conn: psycopg.Connection) -> int:
    return conn.execute(
        "select count(*) from employees as e"
        " where not exists (select from departments as d where d.department_id = e.department_id)"
        " or not exists (select from jobs as j where j.job_id = e.job_id)"
    ).fetchone()[0]


def _waits_for_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    """True once session `pid` waits for a lock. On Citus the wait may be a
    worker's, on the session's behalf: then any lock wait in the cluster."""
    citus = conn.execute("select to_regclass('citus_lock_waits') is not null").fetchone()[0]
    query, params = (
        ("select exists (select from citus_lock_waits)", ())
        if citus
        else ("select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,))
    )
    for _ in range(100):
        if conn.execute(query, params).fetchone()[0]:
            return True
        time.sleep(0.05)
    return False


def _in_thread(work) -> tuple[threading.Thread, list]:  # noqa: ANN001
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_delete_waits_for_the_batch_then_fails(conn, dsn) -> None:
    load_reference_rows(conn)
    with psycopg.connect(dsn) as batch, psycopg.connect(dsn, autocommit=True) as deleter:
        result = ingest(batch, "employees", [employee(1, department_id=3)])  # not committed
        assert result["inserted"] == 1
        pid = deleter.info.backend_pid
        thread, outcome = _in_thread(
            lambda: deleter.execute("delete from departments where department_id = 3")
        )
        assert _waits_for_a_lock(conn, pid), "the delete should wait for the batch's row lock"
        batch.commit()
        thread.join(timeout=30)
    assert isinstance(outcome[0], psycopg.errors.ForeignKeyViolation)
    assert conn.execute("select count(*) from departments where department_id = 3").fetchone()[0]
    assert _orphans(conn) == 0


def test_a_batch_waits_for_the_delete_then_rejects(conn, dsn) -> None:
    load_reference_rows(conn)
    with psycopg.connect(dsn) as deleter, psycopg.connect(dsn, autocommit=True) as batch:
        deleter.execute("delete from departments where department_id = 3")  # not committed
        pid = batch.info.backend_pid
        rows = [employee(1, department_id=3), employee(2, department_id=1)]
        thread, outcome = _in_thread(lambda: ingest(batch, "employees", rows))
        assert _waits_for_a_lock(conn, pid), "the batch should wait for the delete's row lock"
        deleter.commit()
        thread.join(timeout=30)
    result = outcome[0]
    assert not isinstance(result, BaseException), result
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert result["rejections"][0]["reason_code"] == "unknown_department"
    assert result["rejections"][0]["field"] == "department_id"
    assert _orphans(conn) == 0
    assert conn.execute("select count(*) from employees").fetchone()[0] == 1


# -- backup, restore and ingest at once ---------------------------------------------------


def _fill(conn: psycopg.Connection, rows: int) -> None:
    """Enough employees for the backup's worker processes (over 512 pages)."""
    load_reference_rows(conn)
    conn.execute(
        "insert into employees select i, 'Person ' || i, '2021-01-01'::timestamptz"
        " + i * interval '1 minute', 1 + i %% 3, 1 + i %% 3 from generate_series(1, %s) i",
        (rows,),
    )
    pages = conn.execute("select pg_relation_size('employees') / 8192").fetchone()[0]
    assert pages > 512


def _start(dsn: str, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], env={**cli_env(dsn), **env}, cwd=PROJECT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen, within: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"{proc.args[3:]} still running after {within} s: a deadlock"
        ) from None
    return proc.returncode, err


@pytest.mark.parametrize("first", ["backup", "restore"])
def test_backup_and_restore_at_once_both_finish(conn, dsn, tmp_path, first) -> None:
    _fill(conn, 150_000)
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path), "DATAARCH_LOCK_TIMEOUT": "5"}
    assert _finish(_start(dsn, env, "backup", "employees"), 120)[0] == 0
    conn.execute("delete from employees where employee_id % 2 = 0")
    commands = {"backup": ("backup", "employees"), "restore": ("restore", "employees")}
    second = "restore" if first == "backup" else "backup"
    started = time.monotonic()
    one = _start(dsn, env, *commands[first])
    wait_until(  # the first holds the table's backup lock before the second starts
        lambda: advisory_lock_held(conn, "backup_lock_key('employees')") or one.poll() is not None,
        f"the {first} to take its lock",
    )
    two = _start(dsn, env, *commands[second])
    outcomes = {first: _finish(one, 90), second: _finish(two, 90)}
    assert time.monotonic() - started < 90
    assert outcomes["backup"][0] == 0, outcomes["backup"][1]
    status, err = outcomes["restore"]
    # the restore either ran (before or after the backup) or was refused at once
    assert status == 0 or (status == 4 and "busy" in err and "Traceback" not in err), err
    held = conn.execute(
        "select count(*) from pg_locks where locktype = 'advisory' or mode = 'AccessExclusiveLock'"
        " and relation = 'employees'::regclass"
    ).fetchone()[0]
    assert held == 0


def test_ingest_answers_while_a_restore_runs(conn, dsn, tmp_path) -> None:
    _fill(conn, 150_000)
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path), "DATAARCH_LOCK_TIMEOUT": "5"}
    assert _finish(_start(dsn, env, "backup", "employees"), 120)[0] == 0
    proc, url = start_server(dsn, **env)
    answers: list[tuple[int, dict, float]] = []
    health: list[tuple[int, float]] = []

    def post(first_id: int) -> None:
        with httpx.Client(base_url=url, headers=JSON_AUTH, timeout=30) as client:
            for n in range(10):
                ids = range(first_id + 100 * n, first_id + 100 * (n + 1))
                began = time.monotonic()
                answer = client.post("/tables/employees/rows", json=[employee(i) for i in ids])
                answers.append((answer.status_code, answer.json(), time.monotonic() - began))

    try:
        restore = _start(dsn, env, "restore", "employees")
        posters = [threading.Thread(target=post, args=(1_000_000 + 10_000 * k,)) for k in range(3)]
        for t in posters:
            t.start()
        while restore.poll() is None:
            began = time.monotonic()
            status = httpx.get(f"{url}/health", timeout=10).status_code
            health.append((status, time.monotonic() - began))
            time.sleep(0.1)
        for t in posters:
            t.join(timeout=60)
        assert _finish(restore, 60)[0] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert len(answers) == 30
    for status, body, took in answers:
        assert took < 15  # bounded by lock_timeout, never a hang
        assert status in (200, 503), body
        if status == 200:
            assert body["inserted"] + body["rejected"] == body["submitted"] == 100
    assert health and all(took < 3 and status in (200, 503) for status, took in health), health
    # every backed-up row is back; every other row came from an answered batch
    assert (
        conn.execute("select count(*) from employees where employee_id <= 150000").fetchone()[0]
        == 150_000
    )


def test_two_migrations_of_one_file_at_once(conn, dsn, tmp_path) -> None:
    """An initial load drops and rebuilds indexes: the second one waits, then
    finds the file loaded. Never 'cache lookup failed', never a traceback."""
    from dataarch.generate import generate

    generate(tmp_path, employees=100_000, bad_ratio=0.01)
    patient = {"DATAARCH_LOCK_TIMEOUT": "120"}  # the second waits for the first, bounded
    first = _start(dsn, patient, "migrate", "--csv-dir", str(tmp_path))
    second = _start(dsn, patient, "migrate", "--csv-dir", str(tmp_path))
    outcomes = [_finish(first, 120), _finish(second, 120)]
    assert [status for status, _ in outcomes] == [0, 0], outcomes
    assert all("Traceback" not in err for _, err in outcomes)
    loaded = conn.execute(
        "select count(*) from migrated_files where file_name = 'hired_employees.csv'"
    ).fetchone()[0]
    assert loaded == 1
    assert conn.execute("select count(*) from employees").fetchone()[0] > 98_000


# -- nothing waits without bound (issue 25) ----------------------------------------------


def _sessions(conn: psycopg.Connection, name: str) -> int:
    return conn.execute(
        "select count(*) from pg_stat_activity where application_name like %s", (name,)
    ).fetchone()[0]


def test_a_backup_and_an_initial_load_both_finish(conn, dsn, tmp_path) -> None:
    """10: the load finds the table read by the backup's workers and loads the
    ordinary way instead of queueing for it behind them."""
    from dataarch.generate import generate

    _fill(conn, 120_000)
    conn.execute("update employees set employee_id = employee_id + 10000000")  # out of the way
    generate(tmp_path / "csv", employees=130_000, bad_ratio=0.0)
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path / "b")}
    backup = _start(dsn, env, "backup")
    wait_until(lambda: _sessions(conn, "dataarch backup worker") or backup.poll() is not None,
               "the backup's workers to read")  # fmt: skip
    migrate = _start(dsn, env, "migrate", "--csv-dir", str(tmp_path / "csv"))
    outcomes = {"backup": _finish(backup, 120), "migrate": _finish(migrate, 120)}
    assert outcomes["backup"][0] == 0, outcomes
    assert outcomes["migrate"][0] == 0, outcomes
    loaded = conn.execute("select count(*) from employees where employee_id < 10000000")
    assert loaded.fetchone()[0] == 130_000


def test_a_killed_backup_leaves_no_session_and_no_partial_file(conn, dsn, tmp_path) -> None:
    """11: its workers die with it, their sessions end, the next backup cleans up."""
    _fill(conn, 300_000)
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    backup = _start(dsn, env, "backup", "employees")
    wait_until(lambda: _sessions(conn, "dataarch backup worker") or backup.poll() is not None,
               "the backup's workers to read")  # fmt: skip
    wait_until(lambda: list((tmp_path / "employees").glob(".*.partial")), "a partial file")
    backup.kill()
    backup.wait(timeout=10)
    wait_until(lambda: not _sessions(conn, "dataarch backup%"), "the backup's sessions to end",
               timeout=30)  # fmt: skip
    assert list((tmp_path / "employees").glob(".*.partial"))  # left by the killed run
    dry = _start(dsn, env, "restore", "--all", "--dry-run")
    assert _finish(dry, 60)[0] == 1  # no set yet, said at once: nothing holds a lock
    again = _start(dsn, env, "backup", "employees")
    status, err = _finish(again, 120)
    assert status == 0, err
    assert not list((tmp_path / "employees").glob(".*.partial"))
    assert "left by a backup that did not finish" in err
    assert "Warning" not in err and "Traceback" not in err  # workers answer on their pipes only
    restore = _start(dsn, env, "restore", "employees")  # a file decoded with workers
    status, err = _finish(restore, 120)
    assert status == 0, err
    assert conn.execute("select count(*) from employees").fetchone()[0] == 300_000
    assert "Warning" not in err and "Traceback" not in err


def test_a_stalled_upload_is_cut_off_and_holds_nothing(conn, dsn, tmp_path) -> None:
    """12: a body that goes silent is cut off; the table is free again."""
    import socket

    load_reference_rows(conn)
    proc, url = start_server(dsn, DATAARCH_UPLOAD_IDLE_TIMEOUT="2")
    try:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            chunk = b"901,Stalled Job\n"
            sock.sendall(
                b"POST /tables/jobs/csv HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + f"{len(chunk):x}".encode()
                + b"\r\n"
                + chunk
                + b"\r\n"
            )  # one chunk, then silence
            wait_until(
                lambda: (
                    _sessions(conn, "dataarch api")
                    and advisory_lock_held(conn, "hashtextextended('dataarch.load:jobs', 0)")
                ),
                "the upload to begin",
            )
            # the server speaks first, after 2 s, and closes the connection
            answer = b"".join(iter(lambda: sock.recv(4096), b"")).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "nothing was loaded" in answer
        wait_until(
            lambda: not advisory_lock_held(conn, "hashtextextended('dataarch.load:jobs', 0)"),
            "the load lock to go",
        )
        assert conn.execute("select count(*) from jobs where job_id = 901").fetchone() == (0,)
        (tmp_path / "jobs.csv").write_text("902,Next Job\n")
        done = _start(dsn, {}, "migrate", "--csv-dir", str(tmp_path))
        assert _finish(done, 60)[0] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_busy_table_names_who_holds_it(conn, dsn, tmp_path) -> None:
    """A wait that runs out says which operation holds the table: exit 4, or
    409/503 with Retry-After over HTTP; never 'cannot reach the database'."""
    load_reference_rows(conn)
    holder = psycopg.connect(dsn, application_name="dataarch restore")
    try:
        holder.execute("lock table jobs in access exclusive mode")
        env = {"DATAARCH_LOCK_TIMEOUT": "1"}
        (tmp_path / "jobs.csv").write_text("903,Late Job\n")
        status, err = _finish(_start(dsn, env, "migrate", "--csv-dir", str(tmp_path)), 60)
        assert status == 4, err
        assert "jobs is busy: dataarch restore (pid" in err and "cannot reach" not in err
        proc, url = start_server(dsn, **env)
        try:
            answer = httpx.post(f"{url}/tables/jobs/rows", json=[{"job_id": 904, "job_name": "x"}],
                                headers=JSON_AUTH, timeout=30)  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert "jobs is busy: dataarch restore (pid" in answer.json()["detail"]
    finally:
        holder.close()


def test_a_backup_that_waits_too_long_for_a_restore_names_it(conn, dsn, tmp_path) -> None:
    """The soak found a backup that waited for a restore's backup lock and
    ended on PostgreSQL's bare 'canceling statement due to lock timeout'."""
    load_reference_rows(conn)
    with psycopg.connect(dsn, application_name="dataarch restore", autocommit=True) as holder:
        holder.execute("select pg_advisory_lock(backup_lock_key('departments'))")
        env = {"DATAARCH_LOCK_TIMEOUT": "1", "DATAARCH_BACKUP_DIR": str(tmp_path)}
        status, err = _finish(_start(dsn, env, "backup", "departments"), 60)
    assert status == 4, err
    assert "departments is busy: dataarch restore (pid" in err, err
    assert "canceling statement" not in err and not list(tmp_path.glob("*/*.avro"))


@pytest.mark.parametrize("round_", range(3))
def test_a_restore_under_load_never_deadlocks(conn, dsn, tmp_path, round_) -> None:
    """13: restores of a referenced table while batches pour into the table
    that references it: each either runs or says it is busy."""
    load_reference_rows(conn)
    ingest(conn, "employees", [employee(i, department_id=1 + i % 3) for i in range(1, 1001)])
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path), "DATAARCH_LOCK_TIMEOUT": "5"}
    assert _finish(_start(dsn, env, "backup"), 120)[0] == 0
    proc, url = start_server(dsn, **env)
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def post(first: int) -> None:
        with httpx.Client(base_url=url, headers=JSON_AUTH, timeout=30) as client:
            n = 0
            while not stop.is_set():
                ids = range(first + 100 * n, first + 100 * (n + 1))
                answer = client.post("/tables/employees/rows", json=[employee(i) for i in ids])
                answers.append((answer.status_code, answer.text))
                n += 1

    posters = [threading.Thread(target=post, args=(10_000_000 * (k + 1),)) for k in range(3)]
    try:
        for t in posters:
            t.start()
        wait_until(lambda: len(answers) >= 3, "the first batches")
        outcomes = [_finish(_start(dsn, env, "restore", table), 60)
                    for table in ("departments", "jobs", "employees")]  # fmt: skip
    finally:
        stop.set()
        for t in posters:
            t.join(timeout=60)
        proc.terminate()
        proc.wait(timeout=10)
    for status, err in outcomes:
        assert status in (0, 4), err
        assert "deadlock" not in err and "cannot reach" not in err, err
    for status, text in answers:
        assert status in (200, 503), text
        assert "deadlock" not in text.lower()
