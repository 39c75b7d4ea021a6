"""Backup sets: a full set holds the ingest log too, verifies record by
record, and restores a whole database, schema and all, in one transaction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
from conftest import PROJECT, cli_env, dataarch, employee, ingest

KPIS = (
    "select * from kpi_hires_by_quarter(2021)",
    "select * from kpi_departments_above_mean(2021)",
)
LOG = ("ingest_batches", "ingest_errors", "migrated_files", "idempotency_keys")


def state(dsn: str) -> dict[str, list]:
    with psycopg.connect(dsn) as conn:
        found = {q: conn.execute(q).fetchall() for q in KPIS}
        for table in ("departments", "jobs", "employees", *LOG):
            found[table] = conn.execute(f"select * from {table} order by 1, 2").fetchall()
    return found


def test_a_full_set_recovers_a_database(conn, dsn, new_database, tmp_path: Path) -> None:
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    assert dataarch(dsn, "migrate").returncode == 0
    ingest(conn, "employees", [employee(5001, department_id=1, job_id=1), employee(5001)])
    source = state(dsn)
    assert source["ingest_errors"] and source["migrated_files"]

    made = dataarch(dsn, "backup", **env)
    assert made.returncode == 0, made.stderr
    (manifest,) = (tmp_path / "sets").glob("*.json")
    assert sorted(json.loads(manifest.read_text())["files"]) == sorted(
        ["departments", "jobs", "employees", *LOG]
    )
    listed = dataarch(dsn, "backups", **env).stdout
    assert f"#1 {manifest.stem}  full, complete: departments 12" in listed

    empty = new_database()
    restored = dataarch(empty, "restore", "--all", **env)
    assert restored.returncode == 0, restored.stderr
    assert "ingest_errors: restored" in restored.stdout
    recovered = state(empty)
    restores = [b for b in recovered["ingest_batches"] if b[2].startswith("restore:")]
    assert [b[1] for b in restores] == ["departments", "jobs", "employees"]  # each a batch
    recovered["ingest_batches"] = [b for b in recovered["ingest_batches"] if b not in restores]
    assert recovered == source  # the data, the KPIs and the ingest log

    again = dataarch(empty, "migrate")
    assert again.stdout.count("already migrated") == 3, again.stdout
    with psycopg.connect(empty, autocommit=True) as recovered:
        batch = ingest(recovered, "employees", [employee(5002, department_id=1, job_id=1)])
    assert batch["inserted"] == 1
    assert batch["batch_id"] > max(row[0] for row in source["ingest_batches"])


def test_restore_all_dry_run_says_what_would_change(conn, dsn, tmp_path: Path) -> None:
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    assert dataarch(dsn, "migrate").returncode == 0
    assert dataarch(dsn, "backup", **env).returncode == 0
    conn.execute("delete from employees where employee_id <= 10")
    ingest(conn, "jobs", [{"job_id": 9999, "job_name": "New"}])
    before = state(dsn)
    dry = dataarch(dsn, "restore", "--all", "--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    assert "employees: would restore" in dry.stdout and "10 added" in dry.stdout
    assert "jobs: would restore" in dry.stdout and "1 removed" in dry.stdout
    assert "dry run: nothing changed" in dry.stdout
    assert state(dsn) == before


def test_verify_reads_every_record(conn, dsn, tmp_path: Path) -> None:
    env = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    assert dataarch(dsn, "migrate").returncode == 0
    assert dataarch(dsn, "backup", **env).returncode == 0
    good = dataarch(dsn, "backup", "verify", **env)
    assert good.returncode == 0 and "7 of 7 file(s) verified" in good.stdout, good.stdout
    (employees,) = (tmp_path / "employees").glob("*.avro")
    data = bytearray(employees.read_bytes())
    data[len(data) // 2] ^= 0xFF
    employees.write_bytes(bytes(data))
    bad = dataarch(dsn, "backup", "verify", **env)
    assert bad.returncode == 1 and "1 FAILED" in bad.stdout
    assert f"FAILED {employees}" in bad.stdout and "SHA-256" in bad.stdout
    # the file alone has no manifest to compare with: its records and checksum decide
    alone = dataarch(dsn, "backup", "verify", str(employees), **env)
    assert alone.returncode == 1 and "FAILED" in alone.stdout and "Traceback" not in alone.stderr


def test_backups_are_readable_by_their_owner_only(conn, dsn, tmp_path: Path) -> None:
    """Files 0640 and folders 0750 whatever the umask, as pgBackRest's
    repository; verify reports a file others may read."""
    ingest(conn, "departments", [{"department_id": 1, "department_name": "Sales"}])
    backups = tmp_path / "backups"
    made = subprocess.run(
        [sys.executable, "-m", "cli", "backup", "departments", "jobs"],
        env={**cli_env(dsn), "DATAARCH_BACKUP_DIR": str(backups)}, cwd=PROJECT,
        capture_output=True, text=True, timeout=120, umask=0,  # the widest umask there is
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    files = [p for p in backups.rglob("*") if p.is_file() and p.name != ".lock"]
    folders = [backups, *(p for p in backups.rglob("*") if p.is_dir())]
    assert len(files) == 3 and len(folders) == 4  # two tables and a manifest; sets/
    assert {p.stat().st_mode & 0o777 for p in files} == {0o640}
    assert {p.stat().st_mode & 0o777 for p in folders} == {0o750}
    assert dataarch(dsn, "backup", "verify", DATAARCH_BACKUP_DIR=str(backups)).returncode == 0
    loose = next(backups.glob("jobs/*.avro"))
    loose.chmod(0o644)
    verified = dataarch(dsn, "backup", "verify", DATAARCH_BACKUP_DIR=str(backups))
    assert verified.returncode == 1
    assert "readable by other users (mode 0644): chmod 0640" in verified.stdout


def test_verify_checks_the_files_without_a_database(conn, dsn, tmp_path: Path) -> None:
    """The database lost: size, SHA-256, every record and the row counts are
    still checked; only the checksums wait for a database."""
    ingest(conn, "jobs", [{"job_id": n, "job_name": f"Job {n}"} for n in range(1, 20)])
    backups = str(tmp_path / "backups")
    assert dataarch(dsn, "backup", "jobs", DATAARCH_BACKUP_DIR=backups).returncode == 0
    gone = "postgresql:///nowhere?host=/nonexistent&connect_timeout=2"
    alone = dataarch(gone, "backup", "verify", DATAARCH_BACKUP_DIR=backups)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert "19 rows  (checksum not checked)" in alone.stdout and "no database" in alone.stderr
    (avro,) = (tmp_path / "backups" / "jobs").glob("*.avro")
    data = bytearray(avro.read_bytes())
    data[-20] ^= 0xFF
    avro.write_bytes(bytes(data))
    broken = dataarch(gone, "backup", "verify", DATAARCH_BACKUP_DIR=backups)
    assert broken.returncode == 1 and "SHA-256 differs" in broken.stdout
