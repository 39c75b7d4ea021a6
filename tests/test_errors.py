"""The error catalogue (dataarch/errors.py) knows every SQLSTATE the SQL raises."""

from __future__ import annotations

import re
import threading

import psycopg
import pytest
from conftest import PROJECT, wait_until

from cli.main import explain
from dataarch.errors import CATALOGUE, sqlstate

RAISED = sorted(
    {
        code
        for folder in ("schema", "procedures", "views")
        for path in (PROJECT / folder).glob("*.sql")
        for code in re.findall(r"errcode\s*=\s*'([0-9A-Z]{5})'", path.read_text())
    }
)


def test_the_sql_raises_project_codes() -> None:
    assert "DAT01" in RAISED and len(RAISED) >= 9


@pytest.mark.parametrize("code", RAISED)
def test_every_code_the_sql_raises_is_catalogued(code) -> None:
    assert code in {entry.code for entry in CATALOGUE}, f"add {code} to dataarch/errors.py"


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [("22003", 400, False), ("54001", 400, False), ("58P01", 503, True), ("XX000", 503, True),
     ("40P01", 503, True), ("DAT08", 409, True), (None, 503, True), ("42P01", 500, False)],
)  # fmt: skip
def test_exact_codes_then_classes(code, status, retry) -> None:
    entry = sqlstate(code)
    assert (entry.status, entry.retry) == (status, retry)


def test_a_deadlock_says_what_happened_and_what_to_do(conn, dsn) -> None:
    """The soak test's migrate said "deadlock detected; nothing changed: try
    again when it has finished": finished, what? Nobody holds anything once
    PostgreSQL has broken the cycle."""
    conn.execute("create table pair (id int primary key)")
    conn.execute("insert into pair values (1), (2)")
    broken: list[psycopg.Error] = []

    def lock(session: psycopg.Connection, row: int) -> None:
        try:
            session.execute("select from pair where id = %s for update", (row,))
        except psycopg.errors.DeadlockDetected as exc:
            broken.append(exc)
            session.rollback()  # the other one goes on

    with psycopg.connect(dsn) as one, psycopg.connect(dsn) as two:
        lock(one, 1)
        lock(two, 2)
        waiting = threading.Thread(target=lock, args=(one, 2))
        waiting.start()
        wait_until(lambda: conn.execute(
            "select true from pg_locks where pid = %s and not granted", (one.info.backend_pid,)
        ).fetchone(), "the first session to wait")  # fmt: skip
        lock(two, 1)
        waiting.join(timeout=60)
    assert len(broken) == 1, "PostgreSQL stops one of the two"
    status, said = explain(broken[0])
    assert status == 4
    assert said == (
        "deadlock detected; it and another operation each waited for the other,"
        " and this one was stopped; nothing changed: run it again"
    )
