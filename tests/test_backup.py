"""Avro backup and restore: round trips, damaged and foreign files, references,
crashes, retention, and the HTTP routes."""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import psycopg
import pytest
from conftest import (
    AUTH,
    PROJECT,
    api_settings,
    cli_env,
    dataarch,
    employee,
    ingest,
    wait_until,
)
from litestar.testing import TestClient

from app import create_app
from backup import RestoreError, backup_tables, list_backups, restore_table
from backup.pipes import WorkerProcess
from backup.store import LOCK, backup_files

NAMES = ["Smith, John", 'Say "hi"', "Zoë Núñez-Dvořák", "😀 Emoji", "tab\tinside", "a\\b"]
BOUNDARIES = [
    "2020-12-31T23:59:59Z",
    "2021-01-01T00:00:00Z",
    "2021-03-31T23:59:59.999999Z",
    "2021-04-01T00:00:00Z",
    "2021-06-30T23:30:00-05:00",
    "2021-12-31T23:59:59.5+00:00",
]


@pytest.fixture
def db(conn: psycopg.Connection) -> psycopg.Connection:
    ingest(conn, "departments", [
        {"department_id": i, "department_name": n} for i, n in enumerate(NAMES, 1)
    ])  # fmt: skip
    ingest(conn, "jobs", [{"job_id": i, "job_name": f"Job {n}"} for i, n in enumerate(NAMES, 1)])
    ingest(conn, "employees", [
        employee(i, employee_name=NAMES[i % len(NAMES)], hiring_date=BOUNDARIES[i % 6],
                 department_id=1 + i % 6, job_id=1 + (i * 7) % 6)
        for i in range(1, 301)
    ])  # fmt: skip
    return conn


def snapshot(conn: psycopg.Connection, table: str) -> list[tuple]:
    return conn.execute(f"select * from {table} order by 1").fetchall()


def write_backup(conn, tmp_path: Path, *tables: str, codec: str = "deflate") -> dict[str, Path]:
    made = backup_tables(conn, tables, tmp_path, codec)
    conn.autocommit = True
    return {info.table: tmp_path / info.table / info.file for info in made.files}


def test_worker_processes_write_one_file_in_page_order(db, tmp_path, monkeypatch) -> None:
    """A table of several parts is encoded by worker processes in the backup's snapshot."""
    monkeypatch.setattr("backup.dump.PAGES_PER_PART", 1)
    db.autocommit = True
    pages = db.execute("select pg_relation_size('employees') / 8192").fetchone()[0]
    assert pages >= 3  # so there are several parts, and so workers
    in_page_order = [r[0] for r in db.execute("select employee_id from employees order by ctid")]
    before = snapshot(db, "employees")
    files = write_backup(db, tmp_path, "employees")
    with files["employees"].open("rb") as f:
        assert [r["employee_id"] for r in fastavro.reader(f)] == in_page_order
    db.execute("delete from employees")
    assert restore_table(db, "employees", files["employees"]).rows == len(before)
    db.autocommit = True
    assert snapshot(db, "employees") == before


class _Checksum:
    """Stands in for the checksum's thread (ThreadPoolExecutor(1)): its
    figures are there before the first block (at_once), or only once the
    last block is read, so every block waits in the spool first (late)."""

    def __init__(self, at_once: bool) -> None:
        self.at_once, self.job = at_once, None

    def __call__(self, *args: object, **kwargs: object) -> _Checksum:
        return self

    def __enter__(self) -> _Checksum:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, job):  # noqa: ANN001, ANN201
        self.job, self.figures = job, job() if self.at_once else None
        return self

    def done(self) -> bool:
        return self.at_once

    def result(self) -> tuple[int, str]:
        return self.figures or self.job()


@pytest.mark.parametrize("at_once", [True, False])
def test_the_header_comes_first_whenever_the_checksum_ends(db, tmp_path, monkeypatch, at_once):
    """Blocks encoded before the checksum is known wait in a spool file
    and follow the header: the file holds every row once, in page order,
    and the header's count and checksum are the table's."""
    monkeypatch.setattr("backup.dump.PAGES_PER_PART", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("backup.dump.ThreadPoolExecutor", _Checksum(at_once))
    db.autocommit = True
    in_page_order = [r[0] for r in db.execute("select employee_id from employees order by ctid")]
    rows, checksum = db.execute("select * from table_checksum('employees')").fetchone()
    files = write_backup(db, tmp_path, "employees")
    with files["employees"].open("rb") as f:
        reader = fastavro.reader(f)
        assert [r["employee_id"] for r in reader] == in_page_order
    assert reader.metadata["dataarch.row_count"] == str(rows)
    assert reader.metadata["dataarch.checksum"] == checksum
    assert list(tmp_path.glob("employees/*")) == [files["employees"]]  # no spool left


def _children() -> set[int]:
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()}


def _encoding(db: psycopg.Connection, monkeypatch):
    """The blocks of employees, one page a part, three cores: two workers."""
    from backup.columns import table_columns
    from backup.dump import Part, _blocks, _parts, _snapshot_orders

    monkeypatch.setattr("backup.dump.PAGES_PER_PART", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    columns = tuple(table_columns(db, "employees"))
    template = Part("employees", columns, "null", os.urandom(16), 0, None)
    return _blocks(db, _parts(db, "employees", template), _snapshot_orders(db))


def test_a_backup_starts_its_workers_and_nothing_else(db, monkeypatch) -> None:
    """A worker a core but one, each `python -m backup.worker` on two pipes:
    no multiprocessing helper beside them (its resource tracker was 12 MB of
    a backup's 100), and none left once the table is read."""
    db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    before = _children()
    with db.transaction():
        blocks = _encoding(db, monkeypatch)
        next(blocks)
        started = _children() - before
        # A child's command line reads empty until its exec has set it up, a
        # moment after Popen returns (1 410 of 1 500 fresh children, both
        # cores busy): read it once it is there.
        commands = [
            wait_until(
                lambda pid=pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1],
                f"process {pid} to show its command line",
            )
            for pid in started
        ]
        assert len(started) == 2, commands
        assert all(c[1:3] == [b"-m", b"backup.worker"] for c in commands), commands
        list(blocks)
    assert not started & _children()


def test_a_worker_killed_fails_the_backup_with_a_clear_error(db, monkeypatch) -> None:
    from backup.store import BackupError

    db.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    before = _children()
    with pytest.raises(BackupError, match="backup worker .* ended"), db.transaction():
        blocks = _encoding(db, monkeypatch)
        next(blocks)
        for pid in _children() - before:
            os.kill(pid, signal.SIGKILL)
        list(blocks)
    assert not _children() - before


def _decoded_by_workers(db, tmp_path, monkeypatch, rows: int, codec: str = "deflate") -> Path:
    """A backup of `rows` more employees, many blocks, restored with two
    decoding workers (three cores) a block a chunk."""
    db.execute(
        "insert into employees (employee_id, employee_name, hiring_date, department_id, job_id)"
        " select 1000 + i, 'Person ' || i, '2021-01-01'::timestamptz + i * interval '1 minute',"
        " 1 + i %% 6, 1 + i %% 6 from generate_series(1, %s) as i",
        (rows,),
    )
    monkeypatch.setattr("backup.dump.PAGES_PER_PART", 1)  # a part, so a block or more, a page
    path = write_backup(db, tmp_path, "employees", codec=codec)["employees"]
    monkeypatch.setattr("backup.restore.PARALLEL_FROM_BYTES", 0)
    monkeypatch.setattr("backup.restore.CHUNK_BLOCKS", 1)
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    return path


def test_restore_workers_decode_a_file_in_its_order(db, tmp_path, monkeypatch) -> None:
    """Each chunk is decoded by the parent or one of two workers, and the rows
    go in in the file's order (page order: the BRIN on batch_id stays good)."""
    path = _decoded_by_workers(db, tmp_path, monkeypatch, 3000)
    before = snapshot(db, "employees")
    started = []
    real = WorkerProcess.__init__

    def spy(self, job, *args):
        started.append(job)
        real(self, job, *args)

    monkeypatch.setattr(WorkerProcess, "__init__", spy)
    with path.open("rb") as f:
        in_file_order = [r["employee_id"] for r in fastavro.reader(f)]
    db.execute("update employees set employee_name = 'changed' where employee_id % 2 = 0")
    assert restore_table(db, "employees", path).changed == len(before) // 2
    db.autocommit = True
    assert started == ["decode", "decode"]
    assert snapshot(db, "employees") == before
    physical = [r[0] for r in db.execute("select employee_id from employees order by ctid")]
    assert physical == in_file_order


def test_a_record_damaged_in_a_workers_chunk_is_named(db, tmp_path, monkeypatch) -> None:
    """No codec: the parent reads past a worker's blocks without decoding them,
    so only the worker meets the damage; the restore names it and changes nothing."""
    path = _decoded_by_workers(db, tmp_path, monkeypatch, 3000, codec="null")
    before = snapshot(db, "employees")
    with path.open("rb") as f:  # block 1 is chunk 1: the first worker's
        name = next(iter(list(itertools.islice(fastavro.block_reader(f), 2))[1]))["employee_name"]
    data = bytearray(path.read_bytes())
    at = data.index(bytes([2 * len(name)]) + name.encode())  # the name, after its length
    data[at] = 0x7E  # the length now runs past the end of the block
    path.write_bytes(bytes(data))
    with pytest.raises(RestoreError, match=r"is damaged after record \d+"):
        restore_table(db, "employees", path)
    db.autocommit = True
    assert snapshot(db, "employees") == before


def test_a_killed_restore_worker_fails_the_restore(db, tmp_path, monkeypatch) -> None:
    from backup.columns import table_columns
    from backup.restore import record_rows

    path = _decoded_by_workers(db, tmp_path, monkeypatch, 20_000)
    before = _children()
    rows = record_rows(path, table_columns(db, "employees"))
    next(rows)  # the workers run ahead until their pipes are full
    for pid in _children() - before:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(RestoreError, match="restore worker process ended"):
        list(rows)
    assert not _children() - before


@pytest.mark.parametrize("codec", ["deflate", "snappy", "null"])
def test_round_trip_every_table(db, tmp_path, codec) -> None:
    before = {t: snapshot(db, t) for t in ("departments", "jobs", "employees")}
    indexes = "select indexdef from pg_indexes where tablename = 'employees' order by 1"
    indexes_before = db.execute(indexes).fetchall()
    files = write_backup(db, tmp_path, "departments", "jobs", "employees", codec=codec)
    db.execute("delete from employees where employee_id > 100")
    db.execute("update jobs set job_name = 'changed'")
    for table in ("employees", "jobs", "departments"):
        assert restore_table(db, table, files[table]).rows == len(before[table])
    db.autocommit = True
    assert {t: snapshot(db, t) for t in before} == before
    keys = db.execute(
        "select count(*) from pg_constraint where contype = 'f'"
        " and conrelid = 'employees'::regclass and condeferrable"
    ).fetchone()
    assert keys == (2,)  # the restore re-created the foreign keys it suspended
    assert db.execute(indexes).fetchall() == indexes_before  # and the indexes, pkey included


def test_plain_fastavro_reads_the_file(db, tmp_path) -> None:
    path = write_backup(db, tmp_path, "employees")["employees"]
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        records = list(reader)
        fields = {f["name"]: f["type"] for f in reader.writer_schema["fields"]}
        meta = reader.metadata
    assert fields["hiring_date"] == {"type": "long", "logicalType": "timestamp-micros"}
    assert fields["employee_id"] == "int" and fields["employee_name"] == "string"
    assert meta["dataarch.table"] == "employees"
    assert int(meta["dataarch.row_count"]) == len(records) == 300
    assert {"dataarch.checksum", "dataarch.created_at", "dataarch.schema_version"} <= set(meta)
    first = next(r for r in records if r["employee_id"] == 2)
    assert first["hiring_date"].isoformat() == "2021-03-31T23:59:59.999999+00:00"
    assert first["employee_name"] == NAMES[2]


def test_files_are_named_by_table_and_time_and_kept(db, tmp_path) -> None:
    for _ in range(4):
        write_backup(db, tmp_path, "jobs")
    names = [p.name for p in backup_files(tmp_path, "jobs")]
    assert len(names) == 4 and all(n.startswith("jobs-") and n.endswith("Z.avro") for n in names)
    backup_tables(db, ["jobs"], tmp_path, keep=2)
    assert [p.name for p in backup_files(tmp_path, "jobs")][:1] == names[3:]
    assert len(list_backups(tmp_path, "jobs")) == 2


def damaged(path: Path, tmp_path: Path) -> Path:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = bytes(40)
    out = tmp_path / "damaged" / path.name
    out.parent.mkdir()
    out.write_bytes(bytes(data))
    return out


def truncated(path: Path, tmp_path: Path) -> Path:
    out = tmp_path / "cut" / path.name
    out.parent.mkdir()
    out.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return out


def with_extra_column(path: Path, tmp_path: Path) -> Path:
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        schema, meta, records = reader.writer_schema, reader.metadata, list(reader)
    schema["fields"].append({"name": "salary", "type": "int"})
    out = tmp_path / "extra.avro"
    with out.open("wb") as f:
        fastavro.writer(f, schema, [{**r, "salary": 1} for r in records], metadata=meta)
    return out


def with_edited_row(path: Path, tmp_path: Path, **change: object) -> Path:
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        schema, meta, records = reader.writer_schema, reader.metadata, list(reader)
    records[0].update(change)
    out = tmp_path / "edited.avro"
    with out.open("wb") as f:
        fastavro.writer(f, schema, records, metadata=meta)
    return out


def not_avro(_: Path, tmp_path: Path) -> Path:
    out = tmp_path / "x.avro"
    out.write_bytes(b"not avro at all")
    return out


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (damaged, "damaged"),
        (truncated, "damaged"),
        (with_extra_column, "has columns"),
        (lambda p, t: with_edited_row(p, t, employee_name="Someone Else"), "checksum"),
        (lambda p, t: with_edited_row(p, t, employee_name=""), "employees_name_not_blank"),
        (lambda p, t: with_edited_row(p, t, employee_name=" x"), "employees_name_trimmed"),
        (lambda p, t: with_edited_row(p, t, department_id=999), "employees_department_id_fkey"),
        (lambda p, t: with_edited_row(p, t, employee_id=2), "employees_pkey"),  # a repeated id
        (not_avro, "not an Avro"),
    ],
)
def test_a_bad_file_changes_nothing(db, tmp_path, make_bad, message) -> None:
    path = write_backup(db, tmp_path, "employees")["employees"]
    db.execute("delete from employees where employee_id > 250")
    before = snapshot(db, "employees")
    with pytest.raises(RestoreError, match=message):
        restore_table(db, "employees", make_bad(path, tmp_path))
    assert snapshot(db, "employees") == before
    # the count triggers a restore turns off for its load are on again:
    # a row ingested now is counted, and the counts equal a recount
    db.autocommit = True
    assert ingest(db, "employees", [employee(5000, department_id=1, job_id=1)])["inserted"] == 1
    assert db.execute("select * from bookkeeping_problems()").fetchall() == []


def test_a_file_of_another_table_is_refused(db, tmp_path) -> None:
    path = write_backup(db, tmp_path, "departments")["departments"]
    before = snapshot(db, "jobs")
    with pytest.raises(RestoreError, match="is a backup of departments, not jobs"):
        restore_table(db, "jobs", path)
    assert snapshot(db, "jobs") == before


def test_references_decide_a_parent_restore(db, tmp_path) -> None:
    old = write_backup(db, tmp_path, "departments")["departments"]
    db.execute("update departments set department_name = department_name || ' (renamed)'")
    assert restore_table(db, "departments", old).rows == 6  # references still hold: fine
    db.autocommit = True
    assert snapshot(db, "departments")[0][1] == NAMES[0]

    ingest(db, "departments", [{"department_id": 7, "department_name": "New"}])
    ingest(db, "employees", [employee(1000, department_id=7)])
    with pytest.raises(RestoreError, match="employees_department_id_fkey"):
        restore_table(db, "departments", old)  # department 7 is missing from the backup
    assert len(snapshot(db, "departments")) == 7


def test_backup_files_agree_with_each_other(db, tmp_path) -> None:
    files = write_backup(db, tmp_path, "departments", "employees")
    ids = {r["department_id"] for r in fastavro.reader(files["departments"].open("rb"))}
    used = {r["department_id"] for r in fastavro.reader(files["employees"].open("rb"))}
    assert used <= ids


def cli(dsn: str, tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": dsn, "DATAARCH_BACKUP_DIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "backup", *args], env=env, cwd=PROJECT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def big_table(conn: psycopg.Connection, rows: int = 300_000) -> None:
    conn.execute(
        "insert into employees select i, 'Person ' || i, '2021-01-01'::timestamptz"
        " + i * interval '1 minute', 1 + i %% 6, 1 + i %% 6"
        " from generate_series(1000, 999 + %s) i",
        (rows,),
    )


def test_kill_9_during_restore_leaves_the_table_unchanged(db, dsn, tmp_path) -> None:
    big_table(db)
    proc = cli(dsn, tmp_path, "dump", "employees")
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    db.execute("delete from employees where employee_id % 2 = 0")
    before = snapshot(db, "employees")

    proc = cli(dsn, tmp_path, "restore", "employees")
    deadline = time.monotonic() + 60
    while not db.execute("select count(*) from pg_stat_progress_copy where tuples_processed > 0"
                         ).fetchone()[0]:  # fmt: skip
        assert proc.poll() is None and time.monotonic() < deadline, "restore never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 30
    while db.execute("select count(*) from pg_locks where relation = 'employees'::regclass"
                     " and mode = 'AccessExclusiveLock'").fetchone()[0]:  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert snapshot(db, "employees") == before


def test_kill_during_backup_leaves_no_backup(db, dsn, tmp_path) -> None:
    big_table(db)
    proc = cli(dsn, tmp_path, "dump", "employees")
    partial = tmp_path / "employees"
    deadline = time.monotonic() + 60
    while not any(partial.glob(".*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline, "backup never started"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert list_backups(tmp_path, "employees") == []
    restore = cli(dsn, tmp_path, "restore", "employees")
    assert restore.wait(timeout=60) == 1
    assert b"no backup of employees" in restore.stderr.read()


def test_http_routes(db, dsn, tmp_path) -> None:
    settings = dataclasses.replace(api_settings(dsn), backup_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        assert client.post("/tables/jobs/backups").status_code == 401
        made = client.post("/tables/jobs/backups", headers=AUTH)
        assert made.status_code == 201
        (made_file,) = made.json()["files"]
        assert made_file["rows"] == 6 and made_file["codec"] == "deflate"
        listed = client.get("/tables/jobs/backups", headers=AUTH).json()
        assert [b["file"] for b in listed] == [made_file["file"]]
        assert "path" not in listed[0] and str(tmp_path) not in made.text
        db.execute("insert into jobs values (7, 'Seven')")
        db.execute("update jobs set job_name = 'x' where job_id < 3")
        done = client.post("/tables/jobs/restore", headers=AUTH)
        assert done.status_code == 200
        assert done.json() == {
            "table": "jobs", "file": made.json()["files"][0]["file"], "rows": 6,
            "added": 0, "removed": 1, "changed": 2, "dry_run": False,
            "bookkeeping": {"files": 0, "answers": 0, "reopened": 0},
        }  # fmt: skip
        assert db.execute("select count(*) from jobs where job_name = 'x'").fetchone()[0] == 0
        dry = client.post("/tables/jobs/restore?dry_run=true", headers=AUTH)
        assert dry.json()["dry_run"] is True and dry.json()["changed"] == 0
        missing = client.post("/tables/jobs/restore", headers=AUTH, json={"file": "../../x"})
        assert missing.status_code == 404
        assert client.get("/tables/nope/backups", headers=AUTH).status_code == 404
        other = client.post("/tables/departments/restore", headers=AUTH)
        assert other.status_code == 404 and "no backup yet" in other.json()["detail"]


# -- the edges: what an operator meets -------------------------------------------------


def backup_env(tmp_path: Path) -> dict[str, str]:
    return {"DATAARCH_BACKUP_DIR": str(tmp_path / "backups")}


def test_rows_an_earlier_release_let_in_stop_the_backup(db, dsn, tmp_path) -> None:
    """A database upgraded from a release that accepted year 10000 in UTC: the
    backup refuses to write a file no restore would take, and says which rows."""
    db.execute("alter table employees drop constraint employees_hiring_date_in_range")
    db.execute("insert into employees values (9001, 'Late', '9999-12-31T23:59:59-14:00', 1, 1)")
    db.execute(
        "alter table employees add constraint employees_hiring_date_in_range check"
        " (hiring_date >= '0001-01-01 00:00:00+00' and hiring_date < '10000-01-01 00:00:00+00')"
        " not valid"
    )
    done = dataarch(dsn, "backup", **backup_env(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "employees_hiring_date_in_range: (9001)" in done.stderr
    assert not list((tmp_path / "backups").rglob("*.avro"))
    check = dataarch(dsn, "db", "check")
    assert check.returncode == 1
    assert "employees: 1 row(s) break employees_hiring_date_in_range: (9001)" in check.stdout
    db.execute("delete from employees where employee_id = 9001")
    assert dataarch(dsn, "db", "check").returncode == 0
    assert dataarch(dsn, "backup", **backup_env(tmp_path)).returncode == 0


def test_retention_goes_by_creation_time_and_keeps_the_new_file(db, dsn, tmp_path) -> None:
    env = backup_env(tmp_path)
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    (older,) = backup_files(tmp_path / "backups", "jobs")
    # copied from a host whose clock was ahead: its name sorts after any new one
    ahead = older.with_name("jobs-29991231T000000.000000Z.avro")
    ahead.write_bytes(older.read_bytes())
    done = dataarch(dsn, "backup", "jobs", "--keep", "1", **env)
    assert done.returncode == 0, done.stderr
    (kept,) = backup_files(tmp_path / "backups", "jobs")
    assert kept.name in done.stdout and kept != ahead and kept != older
    assert f"pruned {older}" in done.stdout and f"pruned {ahead}" in done.stdout
    # by age: a file made two days ago goes, the new one stays
    os.utime(kept, (time.time() - 2 * 86400,) * 2)
    with_days = dataarch(dsn, "backup", "jobs", "--keep-days", "1", **env)
    assert with_days.returncode == 0 and f"pruned {kept}" not in with_days.stdout
    assert len(backup_files(tmp_path / "backups", "jobs")) == 2  # the header, not mtime, decides


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_a_bad_keep_is_a_usage_error(dsn, tmp_path, bad) -> None:
    done = dataarch(dsn, "backup", "jobs", "--keep", bad, **backup_env(tmp_path))
    assert done.returncode == 2 and "--keep" in done.stderr and "Traceback" not in done.stderr


def test_an_unreadable_file_is_listed_as_such(db, dsn, tmp_path) -> None:
    env = backup_env(tmp_path)
    assert dataarch(dsn, "backup", "jobs", **env).returncode == 0
    junk = tmp_path / "backups" / "jobs" / "jobs-20200101T000000.000000Z.avro"
    junk.write_bytes(b"\x00" * 100)
    os.utime(junk, (time.time() - 86400,) * 2)  # an old file, damaged since
    listed = dataarch(dsn, "backups", **env)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    assert f"{junk}  UNREADABLE" in listed.stdout
    settings = dataclasses.replace(api_settings(dsn), backup_dir=tmp_path / "backups")
    with TestClient(create_app(settings)) as client:
        answer = client.get("/tables/jobs/backups", headers=AUTH)
        assert answer.status_code == 200
        assert [bool(b["problem"]) for b in answer.json()] == [True, False]
        # and the newest readable file is what a restore picks
        assert client.post("/tables/jobs/restore", headers=AUTH).status_code == 200


def test_checksums_print_unsigned(db, dsn, tmp_path) -> None:
    signed = "select mod(sum(hashtextextended(t::text, 0)::numeric), 18446744073709551616)"
    n = 100
    while db.execute(f"{signed} from departments as t").fetchone()[0] >= 0:
        db.execute("insert into departments values (%s, %s)", (n, f"Dept {n}"))
        n += 1
    done = dataarch(dsn, "backup", "departments", **backup_env(tmp_path))
    checksum = done.stdout.split("checksum ")[1].split(")")[0]
    assert checksum.isdigit() and 0 <= int(checksum) < 2**64
    assert dataarch(dsn, "backup", "verify", **backup_env(tmp_path)).returncode == 0


def as_an_ordinary_user() -> None:
    """preexec_fn: root keeps its uid but loses the capabilities that let it
    write where the permission bits say no, as an operator's service would."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP: gone after exec


def test_a_read_only_backup_directory_is_one_line(db, dsn, tmp_path) -> None:
    folder = tmp_path / "backups"
    folder.mkdir()
    folder.chmod(0o555)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "backup", "jobs"],
        env={**cli_env(dsn), "DATAARCH_BACKUP_DIR": str(folder)}, cwd=PROJECT,
        capture_output=True, text=True, timeout=60, preexec_fn=as_an_ordinary_user,
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot write the backup" in done.stderr and "permission denied" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_full_disk_removes_the_partial_set(db, dsn, tmp_path) -> None:
    """The third file of a full set cannot be written: none of the set stays."""
    big_table(db, 50_000)

    def small_files() -> None:  # writes past 200 kB fail, as on a full disk
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    env = {**cli_env(dsn), **backup_env(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "backup"], env=env, cwd=PROJECT,
        capture_output=True, text=True, timeout=120, preexec_fn=small_files,
    )  # fmt: skip
    assert done.returncode == 1 and "no space left" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not [p for p in (tmp_path / "backups").rglob("*") if p.is_file() and p.name != LOCK]
    assert db.execute("select count(*) from backup_catalog").fetchone()[0] == 0


def test_restore_into_a_database_without_the_schema(db, dsn, new_database, tmp_path) -> None:
    env = backup_env(tmp_path)
    assert dataarch(dsn, "backup", **env).returncode == 0
    empty = new_database()
    one = dataarch(empty, "restore", "jobs", **env)
    assert one.returncode == 1 and "Traceback" not in one.stderr
    assert "no dataarch schema" in one.stderr and "dataarch db init" in one.stderr
    whole = dataarch(empty, "restore", "--all", **env)
    assert whole.returncode == 0, whole.stderr
    with psycopg.connect(empty) as restored:
        assert snapshot(restored, "employees") == snapshot(db, "employees")
