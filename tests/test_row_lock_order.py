"""The one order for rows (procedures/003, rule 4): a statement that changes
several rejections (rows of ingest_errors) locks them in error_id order.
A batch resolved the rejections its rows answer in record_id order while
closing them went by error_id: two such statements could each hold one
rejection and wait for the other's, and PostgreSQL broke the cycle by
failing one ("deadlock detected"; the soak test met it, a migration the
victim). Each test holds the first rejection in error_id order the way the
other statement would, makes the operation wait for it, and then asks for
the second: in one order nobody holds it yet."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT, employee, ingest, load_reference_rows, wait_until
from psycopg.types.json import Jsonb

WAITING = """
select exists (
    select from pg_locks as l
    where l.pid = %s and not l.granted and l.locktype in ('transactionid', 'tuple')
)
"""


def _rejections_in_reverse(conn: psycopg.Connection) -> tuple[int, int]:
    """Two open rejections of employees whose error_id order is the reverse
    of their record_id order: (the one of employee 9, the one of employee 5)."""
    load_reference_rows(conn)
    for employee_id in (9, 5):
        done = ingest(conn, "employees", [employee(employee_id, department_id=99)])
        assert done["rejected"] == 1, done
    ids = conn.execute(
        "select error_id from ingest_errors where table_name = 'employees'"
        " and record_id in (9, 5) order by error_id"
    ).fetchall()
    return ids[0][0], ids[1][0]


def _in_background(dsn: str, sql: str, params: tuple) -> tuple[threading.Thread, dict, int]:
    """Run sql in a session of its own, in a thread; its pid, and what it
    answered (or raised) once done."""
    session = psycopg.connect(dsn, autocommit=True)
    pid = session.info.backend_pid
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["answer"] = session.execute(sql, params).fetchone()[0]
        except psycopg.Error as exc:
            outcome["error"] = exc
        finally:
            session.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome, pid


# Each operation that changes rejections, given them in error_id order: its SQL.
OPERATIONS = {
    "a_batch_resolving_them": lambda first, second: (
        "select ingest_batch(%s)",
        (Jsonb({"table": "employees", "rows": [employee(5), employee(9)]}),),
    ),
    "a_close_of_them": lambda first, second: (
        "select close_rejections(%s, 'by the test')",
        ([second, first],),
    ),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_operation_waits_for_the_first_rejection_holding_none_after_it(
    conn, dsn, operation
) -> None:
    first, second = _rejections_in_reverse(conn)
    sql, params = OPERATIONS[operation](first, second)
    with psycopg.connect(dsn) as other:
        other.execute(
            "select close_rejections(%s, 'the other statement, its first row')", ([first],)
        )
        thread, outcome, pid = _in_background(dsn, sql, params)
        wait_until(lambda: conn.execute(WAITING, (pid,)).fetchone()[0], "the operation to wait")
        # the other statement's second row: free, or this is a deadlock
        other.execute("set local lock_timeout = '10s'")
        closed = other.execute(
            "select close_rejections(%s, 'the other statement, its second row')", ([second],)
        ).fetchone()[0]
        assert closed["closed"] == [second]
        other.commit()
    thread.join(timeout=60)
    assert "error" not in outcome, outcome
    assert conn.execute(
        "select count(*) from ingest_errors where error_id in (%s, %s) and closed_at is not null",
        (first, second),
    ).fetchone() == (2,)


def test_every_statement_that_changes_rejections_locks_them_in_error_id_order() -> None:
    """Every UPDATE of ingest_errors in procedures/ reads the rows it changes
    from a locking subquery in error_id order, so a statement added tomorrow
    is held to the rule the day it is written."""
    found = []
    for path in sorted((PROJECT / "procedures").glob("*.sql")):
        text = path.read_text()
        for match in re.finditer(r"\bupdate ingest_errors\b", text):
            statement = text[match.start() : text.find(";", match.start())]
            if not re.search(r"order by \w+\.error_id\s+for (no key )?update", statement):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{Path(path).name}:{line}")
    assert found == [], f"rejections changed without locking them in error_id order: {found}"


def test_two_reverts_of_one_batch_at_once_are_one_revert_and_a_refusal(conn, dsn) -> None:
    """Both took the table for writing (two reverts of employees batches
    may run together), both planned the batch as not reverted yet, and the
    second removed nothing, recorded a revert of its own and overwrote
    reverted_by: two reverts of one batch, the first one orphaned."""
    load_reference_rows(conn)
    batch = ingest(conn, "employees", [employee(1), employee(2)])["batch_id"]
    with psycopg.connect(dsn) as first:
        done = first.execute("select revert_batch(%s)", (batch,)).fetchone()[0]
        (reverting,) = done["reverted"]
        thread, outcome, pid = _in_background(dsn, "select revert_batch(%s)", (batch,))
        wait_until(lambda: conn.execute(WAITING, (pid,)).fetchone()[0], "the second revert to wait")
    thread.join(timeout=60)
    refused = outcome.get("error")
    assert isinstance(refused, psycopg.Error) and refused.sqlstate == "DAT12", outcome
    assert f"was reverted already, by batch {reverting['batch_id']}" in str(refused)
    assert conn.execute(
        "select b.reverted_by, (select count(*) from ingest_batches as r"
        " where r.reverts = b.batch_id)"
        " from ingest_batches as b where b.batch_id = %s",
        (batch,),
    ).fetchone() == (reverting["batch_id"], 1)
