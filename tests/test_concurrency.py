"""Concurrent batches with overlapping ids: no deadlock, no duplicate, no loss."""

from __future__ import annotations

import random
import threading

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
