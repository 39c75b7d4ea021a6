"""The one lock order (procedures/003), checked where it matters: at the
moment an operation waits. Whoever waits for a data table while holding a
lock on a table later in the order, or a weaker lock on the same one that
it now wants to upgrade, can meet a session that holds the one and waits
for the other: a deadlock (the soak found one: a revert read jobs, then
asked for employees, which a restore of jobs held while it waited for
jobs). So every operation is made to wait by a session that follows the
order, holding the data tables up to each one in each mode the operations
take, and what the operation holds at that moment is compared with the
order. An operation that locks several tables takes them all or none: while
it waits it holds none of them (only what it read before, in ACCESS SHARE),
so it waits on nobody's behalf. The order and the tables come from the
database, so a new table is checked the day it is added; a new operation,
by adding a line here."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from conftest import employee, ingest, load_reference_rows, wait_until
from psycopg.types.json import Jsonb

MODES = ("row exclusive", "share", "access exclusive")  # what operations take; see 003

# Each operation: the SQL its transaction runs (its first step, for a restore),
# given the batches made by _batches().
OPERATIONS: dict[str, Callable[[dict[str, int]], tuple[str, tuple]]] = {
    "revert an employees batch": lambda b: ("select revert_batch(%s)", (b["employees"],)),
    "revert a jobs batch": lambda b: ("select revert_batch(%s, true)", (b["jobs"],)),
    "revert a departments batch": lambda b: ("select revert_batch(%s, true)", (b["departments"],)),
    "dry run of a revert": lambda b: ("select revert_plan(%s, true)", (b["departments"],)),
    "restore jobs": lambda b: ("select restore_lock(array['jobs'])", ()),
    "restore everything": lambda b: ("select restore_lock(_backup_tables())", ()),
    "ingest employees": lambda b: (
        "select ingest_batch(%s)",
        (Jsonb({"table": "employees", "rows": [employee(99, department_id=2, job_id=1)]}),),
    ),
}

# The data tables, in the one order.
DATA_TABLES = """
select array_agg(t order by n)
from unnest(_lock_order()) with ordinality as o (t, n)
where _table_columns(t) is not null
"""
# What session %s waits for, and the locks it holds on that data table or later ones.
WAIT = f"""
select
    w.relation::regclass::text as awaited,
    coalesce(array_agg(format('%%s %%s', h.mode, h.relation::regclass)) filter (
        where array_position(o.tables, h.relation::regclass::text)
            >= array_position(o.tables, w.relation::regclass::text)
    ), '{{}}') as out_of_order
from pg_locks as w
cross join ({DATA_TABLES}) as o (tables)
left join pg_locks as h
    on h.pid = w.pid and h.granted and h.locktype = 'relation'
    and h.relation::regclass::text = any(o.tables)
where w.pid = %s and not w.granted and w.locktype = 'relation'
group by w.relation, o.tables
"""


def _batches(conn: psycopg.Connection) -> dict[str, int]:
    """A batch of each table: departments 1-3 and jobs 1-3, two employees."""
    load_reference_rows(conn)
    ingest(conn, "departments", [{"department_id": 7, "department_name": "Seven"}])
    ingest(conn, "jobs", [{"job_id": 7, "job_name": "Seventh"}])
    ingest(conn, "employees", [employee(1, department_id=7, job_id=7), employee(2)])
    return dict(
        conn.execute(
            "select distinct on (table_name) table_name, batch_id"
            " from ingest_batches order by table_name, batch_id desc"
        ).fetchall()
    )


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_operation_waits_only_in_the_one_lock_order(conn, dsn, operation) -> None:
    batches = _batches(conn)
    sql, params = OPERATIONS[operation](batches)
    tables = conn.execute(DATA_TABLES).fetchone()[0]
    seen: list[str] = []
    for at, table in enumerate(tables):
        for mode in MODES:
            with (
                psycopg.connect(dsn) as holder,
                psycopg.connect(dsn, autocommit=False) as op,
            ):
                holder.execute(f"lock table {', '.join(tables[: at + 1])} in {mode} mode")
                pid = op.info.backend_pid
                done = threading.Event()

                def run(op: psycopg.Connection = op, done: threading.Event = done) -> None:
                    try:
                        op.execute(sql, params)
                    except psycopg.Error:
                        pass  # its outcome is another test's; this one looks at its waits
                    finally:
                        done.set()

                thread = threading.Thread(target=run)
                thread.start()
                waiting = wait_until(
                    lambda pid=pid, done=done: (
                        done.is_set() or conn.execute(WAIT, (pid,)).fetchone()
                    ),
                    f"{operation} to wait or to finish ({table} held in {mode} mode)",
                )
                holder.rollback()  # first: the operation holds `op` until it ends
                thread.join(timeout=60)
                assert not thread.is_alive(), f"{operation} never finished"
                op.rollback()
                if waiting is not True:
                    awaited, out_of_order = waiting
                    seen.append(f"{awaited} ({mode})")
                    assert out_of_order == [], (
                        f"{operation} waits for {awaited} ({table} held in {mode} mode)"
                        f" while holding {out_of_order}: a deadlock waiting to happen"
                    )
    assert seen, f"{operation} never waited: the test proved nothing"


HELD = """
select l.relation::regclass::text, l.mode
from pg_locks as l
where l.pid = %s and l.granted and l.locktype = 'relation'
    and l.relation::regclass::text = any(_lock_order())
order by array_position(_lock_order(), l.relation::regclass::text)
"""


@pytest.mark.parametrize(
    "operation", ["revert a departments batch", "revert a jobs batch", "restore everything"]
)
def test_an_operation_of_several_tables_waits_holding_none_of_them(conn, dsn, operation) -> None:
    batches = _batches(conn)
    sql, params = OPERATIONS[operation](batches)
    with psycopg.connect(dsn, autocommit=False) as op:  # what it takes, unobstructed
        op.execute(sql, params)
        taken = op.execute(HELD, (op.info.backend_pid,)).fetchall()
        op.rollback()
    tables = conn.execute(DATA_TABLES).fetchone()[0]
    last = [t for t, mode in taken if mode != "AccessShareLock" and t in tables][-1]
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn, autocommit=False) as op:
        holder.execute(f"lock table {last} in access exclusive mode")
        pid = op.info.backend_pid
        thread = threading.Thread(target=lambda: op.execute(sql, params))
        thread.start()
        wait_until(
            lambda: conn.execute(
                "select true from pg_locks where pid = %s and not granted", (pid,)
            ).fetchone(),
            f"{operation} to wait for {last}",
        )
        held = conn.execute(HELD, (pid,)).fetchall()
        holder.rollback()
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{operation} never finished"
        op.rollback()
    assert [(t, mode) for t, mode in held if mode != "AccessShareLock"] == [], (
        f"{operation} waits for {last} holding {held}: whoever waits for those waits for it"
    )
