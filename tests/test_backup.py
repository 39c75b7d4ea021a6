"""Avro backup and restore: round trips, damaged and foreign files, references,
crashes, retention, and the HTTP routes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import psycopg
import pytest
from conftest import AUTH, api_settings, employee, ingest
from litestar.testing import TestClient

from app import create_app
from backup import RestoreError, backup_tables, list_backups, restore_table
from backup.store import backup_files

PROJECT = Path(__file__).resolve().parent.parent
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
    infos = backup_tables(conn, tables, tmp_path, codec)
    conn.autocommit = True
    return {info.table: Path(info.path) for info in infos}


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
    assert restore_table(db, "employees", files["employees"]) == len(before)
    db.autocommit = True
    assert snapshot(db, "employees") == before


@pytest.mark.parametrize("codec", ["deflate", "snappy", "null"])
def test_round_trip_every_table(db, tmp_path, codec) -> None:
    before = {t: snapshot(db, t) for t in ("departments", "jobs", "employees")}
    indexes = "select indexdef from pg_indexes where tablename = 'employees' order by 1"
    indexes_before = db.execute(indexes).fetchall()
    files = write_backup(db, tmp_path, "departments", "jobs", "employees", codec=codec)
    db.execute("delete from employees where employee_id > 100")
    db.execute("update jobs set job_name = 'changed'")
    for table in ("employees", "jobs", "departments"):
        assert restore_table(db, table, files[table]) == len(before[table])
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


def test_a_file_of_another_table_is_refused(db, tmp_path) -> None:
    path = write_backup(db, tmp_path, "departments")["departments"]
    before = snapshot(db, "jobs")
    with pytest.raises(RestoreError, match="is a backup of departments, not jobs"):
        restore_table(db, "jobs", path)
    assert snapshot(db, "jobs") == before


def test_references_decide_a_parent_restore(db, tmp_path) -> None:
    old = write_backup(db, tmp_path, "departments")["departments"]
    db.execute("update departments set department_name = department_name || ' (renamed)'")
    assert restore_table(db, "departments", old) == 6  # references still hold: fine
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
        assert made.json()["rows"] == 6 and made.json()["codec"] == "deflate"
        listed = client.get("/tables/jobs/backups", headers=AUTH).json()
        assert [b["file"] for b in listed] == [made.json()["file"]]
        db.execute("delete from jobs where job_id = 6 and not exists"
                   " (select from employees where job_id = 6)")  # fmt: skip
        db.execute("update jobs set job_name = 'x'")
        done = client.post("/tables/jobs/restore", headers=AUTH)
        assert done.status_code == 200
        assert done.json() == {"table": "jobs", "file": made.json()["file"], "rows": 6}
        assert db.execute("select count(*) from jobs where job_name = 'x'").fetchone()[0] == 0
        missing = client.post("/tables/jobs/restore", headers=AUTH, json={"file": "../../x"})
        assert missing.status_code == 404
        assert client.get("/tables/nope/backups", headers=AUTH).status_code == 404
        other = client.post("/tables/departments/restore", headers=AUTH)
        assert other.status_code == 404 and "no backup yet" in other.json()["detail"]
