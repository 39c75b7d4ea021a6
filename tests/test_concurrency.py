"""Concurrent batches: overlapping ids never deadlock, duplicate or get lost, and
references hold while departments are deleted."""

from __future__ import annotations

import random
import threading
import time

import psycopg
from conftest import employee, ingest, load_reference_rows


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
    for _ in range(100):
        waiting = conn.execute(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = %s", (pid,)
        ).fetchone()[0]
        if waiting:
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
    assert (result["inserted"], result["rejected"]) == (1, 1)
    assert result["rejections"][0]["reason_code"] == "unknown_department"
    assert result["rejections"][0]["field"] == "department_id"
    assert _orphans(conn) == 0
    assert conn.execute("select count(*) from employees").fetchone()[0] == 1
