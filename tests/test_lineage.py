"""Lineage and undo: every row knows the batch that wrote it, and a batch
can be reverted, exactly, as a batch of its own (issue 26). The rule of
the operations holds after each: bookkeeping_problems() finds nothing."""

from __future__ import annotations

import json

import psycopg
import pytest
from conftest import (
    AUTH,
    api_settings,
    dataarch,
    employee,
    everything,
    ingest,
    load_reference_rows,
    problems,
    write,
)
from litestar.testing import TestClient

from app import create_app
from dataarch.migrate import describe, migrate_file, retry_rejected

KPIS = (
    "select * from kpi_hires_by_quarter(2021)",
    "select * from kpi_departments_above_mean(2021)",
)
# The KPIs recomputed from employees alone, not from hire_counts.
RECOUNT = """
select e.department_id, e.job_id, count(*)
from employees as e where extract(year from e.hiring_date at time zone 'UTC') = 2021
group by 1, 2 order by 1, 2
"""


def lineage(conn: psycopg.Connection, table: str, id_: int) -> dict:
    return conn.execute("select row_lineage(%s, %s)", (table, id_)).fetchone()[0]


def revert(conn: psycopg.Connection, batch_id: int, cascade: bool = False) -> dict:
    return conn.execute("select revert_batch(%s, %s)", (batch_id, cascade)).fetchone()[0]


# -- lineage ---------------------------------------------------------------------------


def test_a_row_from_each_kind_of_source_knows_where_it_came_from(conn, dsn, tmp_path) -> None:
    load_reference_rows(conn)
    api = conn.execute(
        "select ingest_batch_json('jobs', %s, 'per_row', 'api', 'key-9', 'req-9')",
        (json.dumps([{"job_id": 8, "job_name": "x"}, {"job_id": 9, "job_name": "Nine"}]),),
    ).fetchone()[0]
    psql = ingest(conn, "jobs", [{"job_id": 10, "job_name": "Ten"}])
    path = write(tmp_path, "jobs.csv", "11,Eleven\nbad line\n12,Twelve\n")
    csv = migrate_file(conn, "jobs", path)
    found = lineage(conn, "jobs", 9)
    assert found["row"] == {"job_id": 9, "job_name": "Nine"}
    assert found["batch"]["batch_id"] == api["batch_id"] and found["batch"]["kind"] == "api"
    assert found["batch"]["idempotency_key"] == "key-9"
    assert found["batch"]["request_id"] == "req-9" and found["position"] == {"index": 1}
    assert lineage(conn, "jobs", 10)["batch"]["batch_id"] == psql["batch_id"]
    twelve = lineage(conn, "jobs", 12)
    assert twelve["batch"]["batch_id"] == csv["batch_id"] and twelve["position"] == {"line": 3}
    assert twelve["batch"]["file"]["name"] == "jobs.csv"
    assert len(twelve["batch"]["file"]["sha256"]) == 64
    assert lineage(conn, "jobs", 999) is None


def test_the_fix_loop_is_visible(conn, dsn) -> None:
    """The rejections that came before a row, for the same id."""
    load_reference_rows(conn)
    first = ingest(conn, "employees", [employee(40, department_id=99)])
    second = ingest(conn, "employees", [employee(40, employee_name="")])
    fixed = ingest(conn, "employees", [employee(40)])
    found = lineage(conn, "employees", 40)
    assert found["batch"]["batch_id"] == fixed["batch_id"]
    assert [(r["batch_id"], r["reason_code"], r["status"]) for r in found["rejections"]] == [
        (first["batch_id"], "unknown_department", "resolved"),
        (second["batch_id"], "blank_string", "resolved"),
    ]
    said = dataarch(dsn, "lineage", "employees", "40")
    assert said.returncode == 0, said.stderr
    assert f"row 0 of #{fixed['batch_id']}" in said.stdout
    assert "unknown_department (resolved)" in said.stdout


def test_a_restore_keeps_lineage_and_is_a_batch(conn, dsn, tmp_path) -> None:
    load_reference_rows(conn)
    loaded = ingest(conn, "jobs", [{"job_id": 20, "job_name": "Twenty"}])
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    assert dataarch(dsn, "restore", "jobs", **env).returncode == 0
    assert lineage(conn, "jobs", 20)["batch"]["batch_id"] == loaded["batch_id"]
    listed = dataarch(dsn, "batches", "--source", "restore")
    assert "restore:jobs-" in listed.stdout and "1 of 1 shown" in listed.stdout
    assert problems(conn) == []


def test_lineage_over_http(conn, dsn) -> None:
    load_reference_rows(conn)
    with TestClient(create_app(api_settings(dsn))) as client:
        posted = client.post("/tables/jobs/rows", json=[{"job_id": 30, "job_name": "Thirty"}],
                             headers={**AUTH, "X-Request-ID": "abc-30"})  # fmt: skip
        found = client.get("/tables/jobs/rows/30/lineage", headers=AUTH).json()
        assert found["batch"]["batch_id"] == posted.json()["batch_id"]
        assert found["batch"]["request_id"] == "abc-30"
        assert client.get("/tables/jobs/rows/31/lineage", headers=AUTH).status_code == 404
        assert client.get("/tables/jobs/rows/0/lineage", headers=AUTH).status_code == 400
        page = client.get("/batches?table=jobs", headers=AUTH).json()
        assert page["items"][0]["batch_id"] == posted.json()["batch_id"]
        one = client.get(f"/batches/{posted.json()['batch_id']}", headers=AUTH).json()
        assert one["present"] == 1 and one["rejections"] == []
        assert client.get("/batches/999999", headers=AUTH).status_code == 404


# -- revert ------------------------------------------------------------------------------


def test_the_wrong_file_found_by_lineage_is_reverted(conn, dsn, tmp_path) -> None:
    """The README's worked example: jobs.csv uploaded into departments."""
    jobs = write(tmp_path, "jobs.csv", "".join(f"{n},Job {n}\n" for n in range(1, 172)))
    wrong = migrate_file(conn, "departments", jobs, force=True)
    assert wrong["inserted"] == 171
    found = lineage(conn, "departments", 5)
    assert found["batch"]["file"]["name"] == "jobs.csv"
    dry = dataarch(dsn, "batches", "revert", str(wrong["batch_id"]), "--dry-run")
    assert f"would revert batch {wrong['batch_id']} (departments): 171 row(s)" in dry.stdout
    done = dataarch(dsn, "batches", "revert", str(wrong["batch_id"]))
    assert done.returncode == 0, done.stderr
    assert "171 row(s) removed" in done.stdout
    assert conn.execute("select count(*) from departments").fetchone() == (0,)
    right = write(tmp_path / "right", "departments.csv", "1,Sales\n2,Support\n")
    assert migrate_file(conn, "departments", right)["inserted"] == 2
    again = migrate_file(conn, "departments", jobs, force=True)  # forgotten: loads again
    assert again["status"] == "migrated"
    assert problems(conn) == []


@pytest.mark.parametrize("kind", ["api", "psql", "csv", "retry"])
def test_a_revert_of_each_kind_takes_out_exactly_its_rows(conn, tmp_path, kind) -> None:
    load_reference_rows(conn, departments=4, jobs=4)
    ingest(conn, "employees", [employee(i, job_id=1 + i % 3) for i in range(1, 50)])
    kpis_before = [conn.execute(q).fetchall() for q in KPIS]
    rows = [employee(i, job_id=1 + i % 4, department_id=1 + i % 4) for i in range(100, 160)]
    if kind == "api":
        batch = conn.execute(
            "select ingest_batch_json('employees', %s, 'per_row', 'api', 'k')", (json.dumps(rows),)
        ).fetchone()[0]["batch_id"]
    elif kind == "psql":
        batch = ingest(conn, "employees", rows)["batch_id"]
    else:
        text = "".join(
            f"{r['employee_id']},{r['employee_name']},{r['hiring_date']},"
            f"{r['department_id'] if kind == 'csv' else 9},{r['job_id']}\n"
            for r in rows
        )
        batch = migrate_file(conn, "employees", write(tmp_path, "hired_employees.csv", text))[
            "batch_id"
        ]
        if kind == "retry":  # the department arrives; the rejected lines are judged again
            ingest(conn, "departments", [{"department_id": 9, "department_name": "Nine"}])
            from dataarch.migrate import retry_rejected

            batch = retry_rejected(conn, "employees")["batch_id"]
    assert (
        conn.execute("select count(*) from employees where batch_id = %s", (batch,)).fetchone()[0]
        == 60
    )
    done = revert(conn, batch)
    assert [r["removed"] for r in done["reverted"]] == [60]
    assert conn.execute("select count(*) from employees").fetchone() == (49,)
    assert [conn.execute(q).fetchall() for q in KPIS] == kpis_before  # KPIs follow
    assert problems(conn) == []  # hire counts equal a recount, and the rest holds
    assert (
        conn.execute(RECOUNT).fetchall()
        == conn.execute(
            "select department_id, job_id, sum(hires) from hire_counts where hire_year = 2021"
            " group by 1, 2 having sum(hires) > 0 order by 1, 2"
        ).fetchall()
    )
    assert conn.execute(  # the count invariant, for every batch
        "select count(*) from ingest_batches where inserted + rejected <> submitted"
    ).fetchone() == (0,)
    again = conn.execute("select source, reverts, removed from ingest_batches order by 1 desc")
    assert ("revert", batch, 60) in again.fetchall()


def test_dependants_are_refused_then_cascaded(conn, dsn) -> None:
    made = ingest(conn, "departments", [{"department_id": 7, "department_name": "Seven"}])
    load_reference_rows(conn)
    staff = ingest(conn, "employees", [employee(i, department_id=7) for i in (1, 2)])
    refused = dataarch(dsn, "batches", "revert", str(made["batch_id"]))
    assert refused.returncode == 1
    assert f"rows of batch(es) {staff['batch_id']} reference rows" in refused.stderr
    dry = dataarch(dsn, "batches", "revert", str(made["batch_id"]), "--cascade", "--dry-run")
    assert dry.stdout.index(f"batch {staff['batch_id']}") < dry.stdout.index(
        f"batch {made['batch_id']}"
    )  # the dependants first
    done = revert(conn, made["batch_id"], cascade=True)
    assert [r["reverts"] for r in done["reverted"]] == [staff["batch_id"], made["batch_id"]]
    assert conn.execute("select count(*) from employees").fetchone() == (0,)
    assert conn.execute("select count(*) from departments where department_id = 7").fetchone() == (
        0,
    )
    assert problems(conn) == []


def test_a_revert_reopens_what_it_resolved_and_forgets_its_file(conn, tmp_path) -> None:
    load_reference_rows(conn)
    bad = ingest(conn, "employees", [employee(5, department_id=99)])
    path = write(tmp_path, "hired_employees.csv", "5,Fixed,2021-01-01T00:00:00Z,1,1\n")
    fix = migrate_file(conn, "employees", path)
    assert fix["resolved"] == 1
    revert(conn, fix["batch_id"])
    status = conn.execute(
        "select _rejection_status(e) from ingest_errors e where e.batch_id = %s",
        (bad["batch_id"],),
    ).fetchone()[0]
    assert status == "open"
    assert migrate_file(conn, "employees", path)["status"] == "migrated"  # loads again


def test_a_revert_reopens_what_its_rows_resolved_after_a_restore(conn, dsn, tmp_path) -> None:
    """A restore can put a batch's row back where a later batch's row with the
    same id had resolved a rejection. Reverting the restored batch then takes
    that row out, and the rejection is open again, whichever batch is
    recorded as resolving it (found by the soak test)."""
    load_reference_rows(conn)
    first = ingest(conn, "employees", [employee(5)])
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    assert dataarch(dsn, "backup", "employees", **env).returncode == 0
    repeated = ingest(conn, "employees", [employee(5)])
    assert repeated["rejections"][0]["reason_code"] == "duplicate_id"
    revert(conn, first["batch_id"])  # 5 is gone; the repeat's rejection stays open
    assert ingest(conn, "employees", [employee(5)])["resolved"] == 1
    assert dataarch(dsn, "restore", "employees", **env).returncode == 0  # 5 is first's again
    assert lineage(conn, "employees", 5)["batch"]["batch_id"] == first["batch_id"]
    assert problems(conn) == []
    assert revert(conn, first["batch_id"])["reverted"][0]["removed"] == 1
    assert problems(conn) == []
    status = conn.execute(
        "select _rejection_status(e) from ingest_errors e where e.batch_id = %s",
        (repeated["batch_id"],),
    ).fetchone()[0]
    assert status == "open"


def test_the_right_file_sent_before_the_revert_says_how_to_load_it(conn, dsn, tmp_path) -> None:
    """Walked as a user: the right file was sent while the wrong one still
    held its ids (rejected: duplicate_id), then the wrong one was reverted.
    Sending the right file again is a skip (same content), and the skip
    says its lines are still rejected and how to load them."""
    wrong = migrate_file(conn, "departments", write(tmp_path / "a", "d.csv", "100,Acounting\n"))
    right = write(tmp_path / "b", "departments.csv", "100,Accounting\n")
    assert migrate_file(conn, "departments", right)["rejected"] == 1
    said = dataarch(dsn, "lineage", "departments", "100").stdout  # a rejection after the row
    assert "since: rejection #" in said and "earlier" not in said, said
    revert(conn, wrong["batch_id"])
    again = migrate_file(conn, "departments", right)
    assert again["status"] == "already_migrated" and again["open_rejections"] == 1
    assert "1 of its lines rejected" in describe(again)
    assert "dataarch migrate --retry-rejected" in describe(again)
    assert retry_rejected(conn, "departments")["inserted"] == 1
    assert conn.execute("select department_name from departments").fetchall() == [("Accounting",)]
    said = dataarch(dsn, "lineage", "departments", "100").stdout  # the fix loop: before it
    assert "before it: rejection #" in said and "(resolved)" in said, said
    position = lineage(conn, "departments", 100)["position"]
    assert (position["line"], position["file"]) == (1, "departments.csv"), position
    assert f"from line 1 of departments.csv (rejection #{position['rejection']})" in said, said
    assert problems(conn) == []


def test_a_revert_closes_the_rejections_of_the_load_it_undid(conn) -> None:
    load_reference_rows(conn)
    batch = ingest(conn, "jobs", [{"job_id": 60, "job_name": "x"}, {"job_id": 61}])
    revert(conn, batch["batch_id"])
    closed = conn.execute(
        "select closed_by, close_note from ingest_errors where batch_id = %s", (batch["batch_id"],)
    ).fetchone()
    assert closed[0] == "revert" and f"batch {batch['batch_id']} was reverted" in closed[1]


@pytest.mark.parametrize("what", ["revert", "restore", "reverted", "missing"])
def test_what_cannot_be_reverted_says_why(conn, dsn, tmp_path, what) -> None:
    load_reference_rows(conn)
    batch = ingest(conn, "jobs", [{"job_id": 70, "job_name": "x"}])["batch_id"]
    expected = {
        "revert": "is a revert", "restore": "is a restore",
        "reverted": "was reverted already", "missing": "no batch 999999",
    }[what]  # fmt: skip
    if what in ("revert", "reverted"):
        undo = revert(conn, batch)["reverted"][0]["batch_id"]
        target = undo if what == "revert" else batch
    elif what == "restore":
        env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
        assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
        assert dataarch(dsn, "restore", "jobs", **env).returncode == 0
        target = conn.execute("select max(batch_id) from ingest_batches").fetchone()[0]
    else:
        target = 999999
    said = dataarch(dsn, "batches", "revert", str(target))
    mistake = 2 if what == "missing" else 1  # a number that names no batch is a usage mistake
    assert said.returncode == mistake and expected in said.stderr, said.stderr


def test_a_dry_run_of_a_revert_changes_nothing(conn, dsn) -> None:
    load_reference_rows(conn)
    batch = ingest(conn, "jobs", [{"job_id": 80, "job_name": "x"}])["batch_id"]
    before = everything(conn)
    assert dataarch(dsn, "batches", "revert", str(batch), "--dry-run").returncode == 0
    with TestClient(create_app(api_settings(dsn))) as client:
        dry = client.post(f"/batches/{batch}/revert?dry_run=true", headers=AUTH)
        assert dry.status_code == 200 and dry.json()["batches"][0]["rows"] == 1
        assert everything(conn) == before
        done = client.post(f"/batches/{batch}/revert", headers=AUTH)
        assert done.status_code == 200 and done.json()["reverted"][0]["removed"] == 1
        twice = client.post(f"/batches/{batch}/revert", headers=AUTH)
        assert twice.status_code == 409 and "reverted already" in twice.json()["detail"]


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_revert_that_waits_for_its_table_names_who_holds_it(conn, dsn, dry_run) -> None:
    """A revert, or its dry run, that waits for the table a restore holds
    says so, naming the restore (found by the soak test: a dry run said
    only "canceling statement due to lock timeout")."""
    load_reference_rows(conn)
    batch = ingest(conn, "employees", [employee(1)])["batch_id"]
    with psycopg.connect(dsn) as holder:
        holder.execute("set application_name = 'dataarch restore'")
        holder.execute("lock table employees in access exclusive mode")
        said = dataarch(dsn, "batches", "revert", str(batch),
                        *(["--dry-run"] if dry_run else []), DATAARCH_LOCK_TIMEOUT="1")  # fmt: skip
    assert said.returncode == 4, said.stderr
    assert "is busy: dataarch restore (pid" in said.stderr, said.stderr
    assert conn.execute("select count(*) from employees").fetchone() == (1,)


def test_a_revert_that_waits_for_a_row_names_who_holds_it(conn, dsn) -> None:
    """The soak's finding: a revert whose DELETE waited for a row another
    transaction held (here a parent row locked FOR KEY SHARE, as an ingest
    locks the departments its rows name) ended on PostgreSQL's bare "lock
    timeout"; it now says who holds the tables it touches."""
    conn.autocommit = True
    batch = ingest(conn, "departments", [{"department_id": 77, "department_name": "Gone"}])
    with psycopg.connect(dsn, application_name="dataarch holder") as holder:
        holder.execute("select from departments where department_id = 77 for key share")
        with pytest.raises(psycopg.errors.LockNotAvailable) as refused, conn.transaction():
            conn.execute("set local lock_timeout = '200ms'")
            conn.execute("select revert_batch(%s)", (batch["batch_id"],))
    message = refused.value.diag.message_primary
    assert f"batch {batch['batch_id']} is busy:" in message and "dataarch holder" in message
    assert conn.execute("select count(*) from departments").fetchone()[0] == 1
