"""Operations that meet: after any of them, every record that says "these
rows are in the table" is true (bookkeeping_problems() finds nothing), a
dry run changes nothing at all, backup sets know what they are, and a file
goes where it says. Each test is a finding of issue 25, as an operator met
it."""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    wait_until,
    write,
)
from litestar.testing import TestClient

import backup.dump
import backup.store
from app import create_app
from backup import backup_tables, list_sets
from backup.store import newest
from dataarch.errors import Busy
from reports import load_data

LOG_TABLES = ("ingest_batches", "ingest_errors", "migrated_files", "idempotency_keys")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"DATAARCH_BACKUP_DIR": str(tmp_path / "backups")}


# -- sets that know what they are ------------------------------------------------------


def test_restore_all_takes_the_newest_full_set(conn, dsn, new_database, env) -> None:
    """1: `backup; backup jobs`, then disaster recovery restores every table."""
    assert dataarch(dsn, "migrate").returncode == 0
    assert dataarch(dsn, "backup", **env).returncode == 0
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    empty = new_database()
    restored = dataarch(empty, "restore", "--all", **env)
    assert restored.returncode == 0, restored.stderr
    for table in ("departments", "jobs", "employees", *LOG_TABLES):
        assert f"{table}: restored" in restored.stdout
    with psycopg.connect(empty) as recovered:
        assert recovered.execute("select count(*) from employees").fetchone()[0] > 1900
        assert problems(recovered) == []


def test_a_named_partial_set_says_what_it_leaves_out(conn, dsn, env) -> None:
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    (jobs_set,) = list_sets(Path(env["DATAARCH_BACKUP_DIR"]))
    assert not jobs_set.full and jobs_set.kind == "partial"
    unnamed = dataarch(dsn, "restore", "--all", **env)
    assert unnamed.returncode == 1 and "no complete full backup set" in unnamed.stderr
    named = dataarch(dsn, "restore", "--all", "--set", jobs_set.name, **env)
    assert named.returncode == 0, named.stderr
    assert "partial set: departments, employees" in named.stdout


def test_retention_keeps_whole_sets(conn, dsn, env) -> None:
    """2: `backup jobs --keep 1` never breaks the last full set."""
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", **env).returncode == 0
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    kept = dataarch(dsn, "backup", "jobs", "--keep", "1", **env)
    assert kept.returncode == 0, kept.stderr
    sets = list_sets(Path(env["DATAARCH_BACKUP_DIR"]))
    assert [(s.full, s.complete) for s in sets] == [(True, True), (False, True)]
    verified = dataarch(dsn, "backup", "verify", **env)
    assert verified.returncode == 0, verified.stdout
    assert dataarch(dsn, "backup", "--keep", "1", **env).returncode == 0
    assert [s.full for s in list_sets(Path(env["DATAARCH_BACKUP_DIR"]))] == [False, True]


def test_retention_killed_half_way_leaves_no_broken_set(conn, dsn, env, monkeypatch) -> None:
    """A backup killed while its retention removed a set (the soak's kill -9)
    left a manifest listing files that were gone: `backup verify` failed on
    it. The set is marked as being removed first; the next prune finishes."""
    load_reference_rows(conn)
    backups = Path(env["DATAARCH_BACKUP_DIR"])
    for _ in range(2):
        assert dataarch(dsn, "backup", **env).returncode == 0
    old, new = list_sets(backups)
    real_unlink, calls = Path.unlink, []

    def dies_after_one(path: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")  # the process ends here
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        backup.store.prune(backups, keep=1, protect=new.name)
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert [s.name for s in list_sets(backups)] == [new.name]
    verified = dataarch(dsn, "backup", "verify", **env)
    assert verified.returncode == 0, verified.stdout
    backup.store.prune(backups, keep=1, protect=new.name)
    assert not [p for p in backups.rglob("*") if old.name in p.name]


def test_retention_runs_only_while_no_other_backup_writes(conn, dsn, env) -> None:
    """Found by the soak test: of two backups with --keep at once, one's
    retention took the other's files, renamed into place but not yet listed
    by its manifest, for files no set lists, and removed them (the other
    failed: "No such file or directory"); or both removed the same set.
    Retention now runs only while no other backup writes; the next one
    with --keep catches up."""
    load_reference_rows(conn)
    backups = Path(env["DATAARCH_BACKUP_DIR"])
    for _ in range(2):
        assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    # the other backup's file: in place, its manifest not written yet
    in_flight = backups / "jobs" / "jobs-20991231T000000.000000Z.avro"
    in_flight.write_bytes(next((backups / "jobs").glob("jobs-*.avro")).read_bytes())
    with backup.store.writing(backups):  # the other backup, still writing
        kept = dataarch(dsn, "backup", "jobs", "--keep", "1", **env)
    assert kept.returncode == 0, kept.stderr
    assert "nothing pruned" in kept.stdout, kept.stdout
    assert in_flight.exists() and len(list_sets(backups)) == 3
    in_flight.unlink()  # that backup failed after all, and removed it
    again = dataarch(dsn, "backup", "jobs", "--keep", "1", **env)
    assert again.returncode == 0 and "pruned" in again.stdout, again.stdout
    assert len(list_sets(backups)) == 1


def test_a_clock_running_ahead_never_wins(conn, dsn, env, monkeypatch) -> None:
    """5: sets are ordered by their number, not by the time they claim."""
    load_reference_rows(conn)
    backups = Path(env["DATAARCH_BACKUP_DIR"])
    ahead = datetime.now(UTC) + timedelta(days=365)

    class Ahead(datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return ahead

    monkeypatch.setattr(backup.store, "datetime", Ahead)
    monkeypatch.setattr(backup.dump, "datetime", Ahead)
    future = backup_tables(conn, None, backups).name
    monkeypatch.undo()
    conn.execute("update jobs set job_name = 'renamed' where job_id = 1")
    real = backup_tables(conn, None, backups).name
    assert future > real  # by name and clock the future set is newer
    sets = list_sets(backups)
    assert [s.name for s in sets] == [future, real]  # by number it is not
    assert sets[0].in_the_future and not sets[1].in_the_future
    assert newest(backups, "jobs").set == real
    listed = dataarch(dsn, "backups", **env).stdout
    assert "DATED IN THE FUTURE" in listed.splitlines()[1]
    as_json = json.loads(dataarch(dsn, "backups", "--json", **env).stdout)
    assert [s["in_the_future"] for s in as_json["sets"]] == [True, False]
    dry = dataarch(dsn, "restore", "jobs", "--dry-run", **env)
    assert real in dry.stdout
    assert dataarch(dsn, "backup", "--keep", "1", **env).returncode == 0
    assert future not in {s.name for s in list_sets(backups)}


# -- a restore and the bookkeeping -------------------------------------------------------


def test_a_restored_table_lets_its_files_load_again(conn, dsn, env, tmp_path) -> None:
    """3: the rows a restore removed are loadable again, by migrate and by upload."""
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "employees", **env).returncode == 0
    lines = "".join(f"{900 + n},Late {n},2021-05-05T10:00:00Z,1,1\n" for n in range(3))
    late = write(tmp_path / "late", "hired_employees.csv", lines)
    first = dataarch(dsn, "migrate", "--csv-dir", str(late.parent))
    assert "3 inserted" in first.stdout, first.stdout
    restored = dataarch(dsn, "restore", "employees", **env)
    assert restored.returncode == 0, restored.stderr
    assert "1 migrated file(s) may load again" in restored.stdout
    assert problems(conn) == []
    again = dataarch(dsn, "migrate", "--csv-dir", str(late.parent))
    assert "3 inserted" in again.stdout, again.stdout
    assert conn.execute("select count(*) from employees where employee_id >= 900").fetchone() == (
        3,
    )
    # and over HTTP
    assert dataarch(dsn, "restore", "employees", **env).returncode == 0
    with TestClient(create_app(api_settings(dsn, backup_dir=tmp_path / "backups"))) as client:
        answer = client.post("/tables/employees/csv?file=hired_employees.csv",
                             content=late.read_bytes(),
                             headers={**AUTH, "Content-Type": "text/csv"})  # fmt: skip
    assert answer.json()["status"] == "migrated" and answer.json()["inserted"] == 3


def test_a_restored_set_lets_the_files_of_each_of_its_tables_load_again(
    conn, dsn, env, tmp_path
) -> None:
    """3, for a set of several tables: the files of every table whose rows the
    restore removed may load again, not only those of the last table."""
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "departments", "jobs", **env).returncode == 0
    (made,) = list_sets(Path(env["DATAARCH_BACKUP_DIR"]))
    late = tmp_path / "late"
    write(late, "departments.csv", "900,Late department\n")
    write(late, "jobs.csv", "900,Late job\n")
    first = dataarch(dsn, "migrate", "--csv-dir", str(late))
    assert first.stdout.count("1 inserted") == 2, first.stdout
    restored = dataarch(dsn, "restore", "--all", "--set", made.name, **env)
    assert restored.returncode == 0, restored.stderr
    assert problems(conn) == []
    again = dataarch(dsn, "migrate", "--csv-dir", str(late))
    assert again.stdout.count("1 inserted") == 2, again.stdout


def test_a_rejection_resolved_by_a_row_a_restore_removed_is_open_again(conn, dsn, env) -> None:
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "employees", **env).returncode == 0
    bad = ingest(conn, "employees", [employee(77, department_id=99)])
    assert bad["rejected"] == 1
    fixed = ingest(conn, "employees", [employee(77)])
    assert fixed["resolved"] == 1
    assert dataarch(dsn, "restore", "employees", **env).returncode == 0
    (status,) = conn.execute(
        "select _rejection_status(e) from ingest_errors e where record_id = 77"
    ).fetchone()
    assert status == "open"
    assert problems(conn) == []


def test_a_stored_answer_for_rows_a_restore_removed_is_forgotten(conn, dsn, env) -> None:
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    body = json.dumps([{"job_id": 70, "job_name": "Seventy"}])
    ask = "select ingest_batch_json('jobs', %s, 'per_row', 'api', 'key-70')"
    assert conn.execute(ask, (body,)).fetchone()[0]["inserted"] == 1
    assert dataarch(dsn, "restore", "jobs", **env).returncode == 0
    again = conn.execute(ask, (body,)).fetchone()[0]
    assert "replayed" not in again and again["inserted"] == 1  # applied, not replayed
    assert problems(conn) == []


def test_a_dry_run_changes_nothing_at_all(conn, dsn, env) -> None:
    """4: not a row, not a sequence; the next batches are numbered as before."""
    assert dataarch(dsn, "migrate").returncode == 0
    assert dataarch(dsn, "backup", **env).returncode == 0
    for n in range(4):
        ingest(conn, "jobs", [{"job_id": 500 + n, "job_name": f"Job {n}"}])
    before = everything(conn)
    for args in (("restore", "--all", "--dry-run"), ("restore", "jobs", "--dry-run")):
        dry = dataarch(dsn, *args, **env)
        assert dry.returncode == 0, dry.stderr
        assert everything(conn) == before
    settings = api_settings(dsn, backup_dir=Path(env["DATAARCH_BACKUP_DIR"]))
    with TestClient(create_app(settings)) as client:
        dry = client.post("/tables/jobs/restore?dry_run=true", headers=AUTH)
        assert dry.status_code == 200 and dry.json()["dry_run"] is True, dry.text
        assert everything(conn) == before
        posted = client.post("/tables/jobs/rows", json=[{"job_id": 600, "job_name": "x"}],
                             headers=AUTH)  # fmt: skip
    assert posted.status_code == 200, posted.text


def test_a_real_restore_never_hands_out_an_id_twice(conn, dsn, env) -> None:
    assert dataarch(dsn, "migrate").returncode == 0
    assert dataarch(dsn, "backup", **env).returncode == 0
    later = [ingest(conn, "jobs", [{"job_id": 700 + n, "job_name": "x"}])["batch_id"]
             for n in range(3)]  # fmt: skip
    assert dataarch(dsn, "restore", "--all", **env).returncode == 0
    after = ingest(conn, "jobs", [{"job_id": 800, "job_name": "y"}])
    assert after["batch_id"] > max(later)
    assert problems(conn) == []


# -- the sample, and files that go where they say ---------------------------------------


def test_make_run_loads_the_sample_only_into_an_empty_database(conn, dsn) -> None:
    """6: `up` on a database that holds rows loads nothing it was not asked to."""
    ingest(conn, "departments", [{"department_id": 1, "department_name": "Real"}])
    up = dataarch(dsn, "up", "--no-serve")
    assert up.returncode == 0, up.stderr
    assert "holds data: the synthetic sample is not loaded" in up.stdout
    assert conn.execute("select count(*) from departments").fetchone() == (1,)


def test_make_run_says_the_sample_is_synthetic(new_database) -> None:
    empty = new_database()
    up = dataarch(empty, "up", "--no-serve")
    assert up.returncode == 0, up.stderr
    assert "synthetic sample" in up.stdout and "hired_employees.csv -> employees" in up.stdout


def test_a_file_named_for_another_table_is_refused(conn, dsn, tmp_path) -> None:
    """7: jobs.csv uploaded into departments is refused, clearly; force loads it."""
    path = write(tmp_path, "jobs.csv", "".join(f"{n},Job {n}\n" for n in range(1, 6)))
    sent = {"content": path.read_bytes(), "headers": {**AUTH, "Content-Type": "text/csv"}}
    with TestClient(create_app(api_settings(dsn))) as client:
        answer = client.post("/tables/departments/csv?file=jobs.csv", **sent)
        assert answer.status_code == 422, answer.text
        assert "jobs.csv is named for jobs, not departments" in answer.json()["detail"]
        assert conn.execute("select count(*) from departments").fetchone() == (0,)
        forced = client.post("/tables/departments/csv?file=jobs.csv&force=true", **sent)
    assert forced.json()["inserted"] == 5


def test_a_file_whose_header_names_another_table_is_refused(conn, dsn, tmp_path) -> None:
    folder = tmp_path / "in"
    write(folder, "departments.csv", "job_id,job_name\n" + "".join(f"{n},J{n}\n" for n in range(5)))
    refused = dataarch(dsn, "migrate", "--csv-dir", str(folder))
    assert refused.returncode == 1
    assert "its header names the columns of jobs, not departments" in refused.stderr
    assert conn.execute("select count(*) from departments").fetchone() == (0,)
    forced = dataarch(dsn, "migrate", "--csv-dir", str(folder), "--force")
    assert forced.returncode == 0 and "4 inserted" in forced.stdout, forced.stdout


# -- reject files -------------------------------------------------------------------------


def test_a_string_row_never_becomes_lines_of_the_reject_file(conn, dsn, tmp_path) -> None:
    """8: what nobody reviewed is not re-sent."""
    body = json.dumps(["7001,Injected A\n7002,Injected B", {"job_id": 5, "job_name": ""}])
    conn.execute("select ingest_batch_json('jobs', %s)", (body,))
    with TestClient(create_app(api_settings(dsn))) as client:
        csv_text = client.get("/tables/jobs/rejections?format=csv", headers=AUTH).text
    assert "Injected" not in csv_text and csv_text == "5,\n"


def test_a_huge_number_does_not_poison_the_exports(conn, dsn, tmp_path) -> None:
    """9: 1e5000 is rendered as the text received, whatever its size."""
    conn.execute(
        "select ingest_batch_json('departments', %s)",
        ('[{"department_id": 1e5000, "department_name": "Big"}]',),
    )
    with TestClient(create_app(api_settings(dsn))) as client:
        answer = client.get("/tables/departments/rejections?format=csv", headers=AUTH)
    assert answer.status_code == 200 and answer.text.startswith("1" + "0" * 5000 + ",Big")


# -- what a backup folder may hold -------------------------------------------------------


def test_a_fifo_or_a_folder_in_the_backup_folder_is_ignored(conn, dsn, env) -> None:
    """14: listing never hangs on a FIFO; pruning never trips on a folder."""
    load_reference_rows(conn)
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    jobs = Path(env["DATAARCH_BACKUP_DIR"]) / "jobs"
    os.mkfifo(jobs / "jobs-zzz.avro")
    (jobs / "jobs-folder.avro").mkdir()
    listed = dataarch(dsn, "backups", "jobs", timeout=30, **env)
    assert listed.returncode == 0 and "jobs-zzz" not in listed.stdout
    with TestClient(create_app(api_settings(dsn, backup_dir=jobs.parent))) as client:
        assert client.get("/tables/jobs/backups", headers=AUTH, timeout=30).status_code == 200
        made = client.post("/tables/jobs/backups?keep=1", headers=AUTH)
        assert made.status_code == 201, made.text
    assert (jobs / "jobs-zzz.avro").exists() and (jobs / "jobs-folder.avro").is_dir()


def test_an_install_beside_a_restore_that_alters_a_table_succeeds(conn, dsn) -> None:
    """Every command installs first; a restore suspends a table's keys (ALTER
    TABLE). An install that rewrote the table's catalogue row beside it
    (a GRANT) waited for it and then failed: "tuple concurrently updated"."""
    import threading

    from dataarch.installer import install

    conn.autocommit = True
    with psycopg.connect(dsn) as altering:
        altering.execute("alter table departments add constraint soon_gone check (true)")
        pid = altering.info.backend_pid
        failed: list[BaseException] = []

        def run_install() -> None:
            try:
                with psycopg.connect(dsn) as installing:
                    install(installing)
            except BaseException as exc:  # noqa: BLE001 - reported below
                failed.append(exc)

        worker = threading.Thread(target=run_install)
        worker.start()
        wait_until(
            lambda: not worker.is_alive() or conn.execute(
                "select exists (select from pg_locks where not granted and pid in"
                " (select pid from pg_stat_activity where %s = any(pg_blocking_pids(pid))))",
                (pid,),
            ).fetchone()[0],
            "the install to end, or to wait for the ALTER TABLE",
        )  # fmt: skip
        altering.commit()  # the catalogue row is rewritten under the waiting install
        worker.join(timeout=60)
        altering.execute("alter table departments drop constraint soon_gone")
        altering.commit()
    assert not failed, failed


def test_an_install_that_waits_too_long_names_who_holds_the_lock(conn, dsn) -> None:
    """Every command installs first; an install waiting past lock_timeout
    ended on PostgreSQL's bare "lock timeout" (the soak met it)."""
    from dataarch.errors import Busy
    from dataarch.installer import _LOCK_KEY, install

    with psycopg.connect(dsn, application_name="dataarch holder") as holder:
        holder.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        with psycopg.connect(dsn) as waiting:
            waiting.execute("set lock_timeout = '200ms'")
            with pytest.raises(Busy, match="dataarch holder .* holds the install lock"):
                install(waiting)


def test_a_load_that_waits_for_a_row_names_who_holds_it(conn, dsn, tmp_path) -> None:
    """A file whose rows resolve a rejection another transaction holds (being
    closed) waited past lock_timeout and said only "lock timeout"."""
    from dataarch.errors import Busy
    from dataarch.migrate import migrate_file

    load_reference_rows(conn)
    ingest(conn, "employees", [{**employee(5), "employee_name": " "}])
    conn.commit()
    path = write(tmp_path, "hired_employees.csv", "5,Fixed,2021-07-27T16:02:08Z,1,1\n")
    with psycopg.connect(dsn, application_name="dataarch holder") as holder:
        holder.execute("select from ingest_errors where record_id = 5 for update")
        conn.execute("set lock_timeout = '200ms'")
        conn.commit()
        with pytest.raises(Busy, match="employees is busy: .*dataarch holder"):
            migrate_file(conn, "employees", path)
    conn.rollback()
    assert conn.execute("select count(*) from employees").fetchone()[0] == 0


def _said_waiting_too_long(dsn: str, query: str, params: tuple = ()) -> str:
    """What `query` says, run as the API's role, when its wait for a lock
    runs out (lock_timeout 200 ms)."""
    api_dsn = dsn.replace("user=postgres", "user=dataarch_api")
    with (
        psycopg.connect(api_dsn, autocommit=True, options="-c lock_timeout=200") as api,
        pytest.raises(psycopg.errors.LockNotAvailable) as waited,
    ):
        api.execute(query, params)
    return waited.value.diag.message_primary


@pytest.mark.parametrize(
    "holding",
    ["lock table ingest_errors in access exclusive mode", "select from ingest_errors for update"],
    ids=["the table (a restore of the log)", "the rejection (a batch resolving it)"],
)
def test_closing_a_rejection_that_waits_too_long_names_who_holds_it(conn, dsn, holding) -> None:
    """Found by the soak test: POST /rejections/close that waited past
    lock_timeout answered 503 "canceling statement due to lock timeout"."""
    load_reference_rows(conn)
    ingest(conn, "employees", [{**employee(5), "employee_name": " "}])
    error_id = conn.execute("select max(error_id) from ingest_errors").fetchone()[0]
    with psycopg.connect(dsn, application_name="dataarch holder") as holder:
        holder.execute(holding)
        said = _said_waiting_too_long(
            dsn, "select close_rejections(%s, 'sent again by hand')", ([error_id],)
        )
    assert "ingest_errors is busy: dataarch holder (pid" in said, said
    assert conn.execute("select closed_at from ingest_errors").fetchall() == [(None,)]


@pytest.mark.parametrize(
    "holding",
    [
        "select ingest_batch_json('employees', '[{}]', 'per_row', 'api', 'key-1')",
        "select from ingest_errors for update",
    ],
    ids=["its Idempotency-Key (the same request, sent twice)", "the rejection it resolves"],
)
def test_a_batch_that_waits_too_long_names_who_holds_it(conn, dsn, holding) -> None:
    """Found by the soak test: POST /tables/employees/rows that waited past
    lock_timeout for a row (not a table) answered 503 "canceling statement
    due to lock timeout"."""
    load_reference_rows(conn)
    ingest(conn, "employees", [{**employee(5), "employee_name": " "}])
    with psycopg.connect(dsn, application_name="dataarch holder") as holder:
        holder.execute(holding)
        said = _said_waiting_too_long(
            dsn, "select ingest_batch_json('employees', %s, 'per_row', 'api', 'key-1')",
            ('[{"employee_id": 5, "employee_name": "Fixed", "hiring_date":'
             ' "2021-07-27T16:02:08Z", "department_id": 1, "job_id": 1}]',),
        )  # fmt: skip
    assert "employees is busy: dataarch holder (pid" in said, said
    assert conn.execute("select count(*) from employees").fetchone() == (0,)


# -- reads that meet a restore --------------------------------------------------------

# What the API and the CLI read, each with the table a restore of which it
# waits for (a restore holds the tables it restores exclusively).
READS = {
    "table_row": ("employees", "select table_row('employees', 3)"),
    "row_lineage": ("employees", "select row_lineage('employees', 3)"),
    "batch_detail": ("employees", "select batch_detail(3)"),  # the employees batch
    "revert_plan": ("employees", "select revert_plan(3)"),  # a revert's dry run
    # a session's first call of a function with a variable of a table's row
    # type waited for that table before its first statement, unnamed
    "row_lineage/its_batch": ("ingest_batches", "select row_lineage('employees', 3)"),
    "batch_detail/its_batch": ("ingest_batches", "select batch_detail(3)"),
    "revert_plan/its_batch": ("ingest_batches", "select revert_plan(3)"),
    "kpi_hires_by_quarter": ("jobs", "select json_agg(k) from kpi_hires_by_quarter(2021) as k"),
    "kpi_departments_above_mean": (
        "departments",
        "select json_agg(k) from kpi_departments_above_mean(2021) as k",
    ),
    "batches": ("ingest_batches", "select batches()"),
    "table_rejections": ("ingest_errors", "select table_rejections('employees')"),
    "rejected_records": (
        "ingest_errors",
        "select json_agg(r) from rejected_records('employees') as r",
    ),
    "data_quality": ("ingest_errors", "select data_quality() - 'as_of'"),
}


def _replaced_uncommitted(dsn: str, table: str) -> psycopg.Connection:
    """A session named as a restore that holds `table` exclusively and, as
    a restore does where nothing references the table, has truncated it and
    put the same rows back, not committed yet (where something references
    it, a restore deletes instead, which a stale snapshot reads as before)."""
    holder = psycopg.connect(dsn, application_name="dataarch restore")
    holder.execute(f"lock table {table} in access exclusive mode")
    referenced = holder.execute(
        "select cardinality(_referencing_tables(%s::regclass)) > 0", (table,)
    ).fetchone()[0]
    if not referenced:
        holder.execute(f"create temp table kept as select * from {table}")
        holder.execute(f"truncate {table}")
        holder.execute(f"insert into {table} overriding system value select * from kept")
    return holder


# The other functions the API's role may call that are not writers (SECURITY
# DEFINER) nor helpers (_...): why each needs no lock before it reads.
READS_WITHOUT_A_LOCK = {
    "already_migrated": "called by a load, whose csv_begin holds the table already",
    "api_role_audit": "reads the catalogue",
    "api_role_privileges": "reads the catalogue",
    "backup_lock_shared": "takes an advisory lock, reads no table",
    "data_dictionary": "reads the dictionary, which no restore replaces",
    "department_hires_in_year": "reads hire_counts, which a restore changes row by row",
    "job_hires_in_year": "reads hire_counts, which a restore changes row by row",
    "hire_years": "reads hire_counts, which a restore changes row by row",
    "engine_status": "reads the catalogue",
    "lock_holders_of": "reads pg_locks",
    "relation_checksum": "a backup's and a verify's, inside their own snapshot and locks",
    "rows_breaking_constraints": "a backup's, inside its snapshot and locks",
    "table_checksum": "a backup's, inside its snapshot and locks",
}


def test_every_read_the_api_may_call_is_checked_against_a_restore(conn) -> None:
    """From the catalogue, so a read added tomorrow is held to it the day it
    is added: every function the API's role may call that is neither a
    writer nor a helper is in READS (volatile, it takes its snapshots after
    its locks, and the two tests below run it against a restore), or says
    why it needs no lock."""
    callable_reads = dict(conn.execute(
        "select p.proname, bool_and(p.provolatile = 'v') from pg_proc as p"
        " where p.pronamespace = 'public'::regnamespace and not p.prosecdef"
        " and p.proname not like '\\_%%' and p.provolatile <> 'i'"
        " and has_function_privilege('dataarch_api', p.oid, 'execute')"
        " group by p.proname"
    ).fetchall())  # fmt: skip
    checked = {f for _, query in READS.values() for f in re.findall(r"(\w+)\(", query)}
    checked &= set(callable_reads)
    assert sorted(set(callable_reads) - checked - set(READS_WITHOUT_A_LOCK)) == []
    assert sorted(set(READS_WITHOUT_A_LOCK) - set(callable_reads)) == [], "no longer there"
    assert sorted(f for f in checked if not callable_reads[f]) == [], "not volatile"


def _before_and_after_a_restore(
    conn: psycopg.Connection, dsn: str, table: str, read: Callable[[psycopg.Connection], object]
) -> tuple[object, list]:
    """What `read` answers as the API's role, then what it answers when it
    waited for a restore of `table` (truncated and refilled with the same
    rows, not committed yet): once the restore commits."""
    api_dsn = dsn.replace("user=postgres", "user=dataarch_api")
    with psycopg.connect(api_dsn, autocommit=True) as api:
        before = read(api)
        holder = _replaced_uncommitted(dsn, table)
        try:
            after: list = []
            reader = threading.Thread(target=lambda: after.append(read(api)))
            reader.start()
            wait_until(lambda: conn.execute(
                "select true from pg_locks where pid = %s and not granted", (api.info.backend_pid,)
            ).fetchone(), f"the read waiting for {table}")  # fmt: skip
            holder.commit()
            reader.join(timeout=60)
            assert not reader.is_alive(), "the read still waits after the restore committed"
        finally:
            holder.close()
    return before, after


@pytest.mark.parametrize("read", list(READS))
def test_a_read_that_waits_for_a_restore_reads_what_it_committed(conn, dsn, read) -> None:
    """A read (as the API's role) that waits for a table a restore holds
    answers from the table as the restore left it. A STABLE function read
    with the snapshot its caller took before the wait: employees, which a
    restore truncates, read as empty, and `dataarch get employees 3`
    answered "no such row" for a row that was there all along."""
    table, query = READS[read]
    load_reference_rows(conn)
    ingest(conn, "employees", [employee(i) for i in range(1, 6)] + [employee(1)])
    before, after = _before_and_after_a_restore(
        conn, dsn, table, lambda api: api.execute(query).fetchone()[0]
    )
    assert before, f"{read} answers something to compare"
    assert after == [before]


@pytest.mark.parametrize("read", list(READS))
def test_a_read_that_waits_too_long_for_a_restore_names_it(conn, dsn, read) -> None:
    """Past lock_timeout, a read says which table is busy and who holds it,
    not PostgreSQL's bare "canceling statement due to lock timeout"."""
    table, query = READS[read]
    load_reference_rows(conn)
    ingest(conn, "employees", [employee(i) for i in range(1, 6)])
    holder = _replaced_uncommitted(dsn, table)
    try:
        said = _said_waiting_too_long(dsn, query)
    finally:
        holder.close()
    assert f"{table} is busy: dataarch restore (pid" in said, said


def test_the_reports_read_after_a_restore_they_wait_for(conn, dsn) -> None:
    """The pages are read in one REPEATABLE READ snapshot, which its first
    query took before the KPIs locked what they read: rendered while a
    restore of the whole set held the ingest log, the data-quality page
    read the log the restore had truncated as empty ("0 rejected")."""
    load_reference_rows(conn)
    ingest(conn, "employees", [employee(i) for i in range(1, 6)] + [{**employee(7), "job_id": 99}])
    before, after = _before_and_after_a_restore(
        conn, dsn, "ingest_errors", lambda api: load_data(api, 2021).quality["totals"]
    )
    assert before["rejected"] == 1, before
    assert after == [before]


def test_reports_that_wait_too_long_for_a_restore_name_it(conn, dsn) -> None:
    load_reference_rows(conn)
    api_dsn = dsn.replace("user=postgres", "user=dataarch_api")
    holder = _replaced_uncommitted(dsn, "ingest_errors")
    try:
        with (
            psycopg.connect(api_dsn, autocommit=True, options="-c lock_timeout=200") as api,
            pytest.raises(Busy) as waited,
        ):
            load_data(api, 2021)
    finally:
        holder.close()
    assert "ingest_errors is busy: dataarch restore (pid" in str(waited.value), waited.value
