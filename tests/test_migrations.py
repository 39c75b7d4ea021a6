"""Schema migrations: applied once, never edited, and a database of the
previous release upgrades in place to exactly what a fresh install gives."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from conftest import PROJECT, employee, ingest, release_tree

from backup import restore_table
from backup.store import backup_files
from dataarch.installer import InstallError, install, plan, schema_version
from dataarch.pgserver import find_bindir

# The last release before migrations: its databases must upgrade in place.
PREVIOUS_RELEASE = "fe07184"
TABLES = ("departments", "jobs", "employees", "ingest_batches", "ingest_errors", "migrated_files")


def _copy_sql(target: Path) -> Path:
    for folder in ("schema", "procedures", "views"):
        shutil.copytree(PROJECT / folder, target / folder)
    return target


def test_an_edited_migration_is_refused(conn, tmp_path: Path) -> None:
    project = _copy_sql(tmp_path)
    table = project / "schema" / "002_employees.sql"
    table.write_text(
        table.read_text().replace(
            "job_id integer not null,", "job_id integer not null,\n    note text,"
        )
    )
    conn.autocommit = False
    with pytest.raises(InstallError, match=r"schema/002_employees\.sql: already applied.*new"):
        install(conn, project)
    conn.rollback()
    assert plan(conn, project).edited == ["schema/002_employees.sql"]


def test_a_new_migration_reaches_an_existing_database(conn, tmp_path: Path) -> None:
    project = _copy_sql(tmp_path)
    (project / "schema" / "999_employee_note.sql").write_text(
        "alter table employees add column note text;\n"
    )
    conn.autocommit = False
    applied = install(conn, project)
    assert [name for name in applied if name.startswith("schema/")] == [
        "schema/999_employee_note.sql"
    ]
    # after a migration every repeatable file runs again: it may have dropped their objects
    assert {"procedures/030_ingest_batch.sql", "views/010_hires_by_quarter.sql"} <= set(applied)
    assert schema_version(conn) == "999_employee_note"
    column = conn.execute(
        "select 1 from pg_attribute where attrelid = 'employees'::regclass and attname = 'note'"
    ).fetchone()
    assert column is not None
    assert install(conn, project) == []


def test_changed_code_is_applied_again(conn, tmp_path: Path) -> None:
    project = _copy_sql(tmp_path)
    view = project / "views" / "010_hires_by_quarter.sql"
    view.write_text(view.read_text() + "\ncomment on view hires_by_quarter is 'changed';\n")
    conn.autocommit = False
    assert install(conn, project) == ["views/010_hires_by_quarter.sql"]
    assert conn.execute("select obj_description('hires_by_quarter'::regclass)").fetchone() == (
        "changed",
    )


# A database installed by the code of a recent commit, before schema/024 and
# 025 changed the rules' functions: today's install must leave it exactly as a
# fresh one (a function whose signature changed leaves no old form behind).
RECENT_INSTALL = "180222c"


def test_a_database_installed_by_a_recent_commit_upgrades_to_a_fresh_install(
    new_database, tmp_path: Path
) -> None:
    recent = release_tree(RECENT_INSTALL, tmp_path / "recent")
    old, fresh = new_database(), new_database()
    with psycopg.connect(old) as conn:
        install(conn, recent)
        assert schema_version(conn) == "023_batches_finished_with_a_count"
        install(conn)
    with psycopg.connect(fresh) as conn:
        install(conn)
    assert _schema_dump(old) == _schema_dump(fresh)


# -- upgrade from the previous release --------------------------------------------------


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's tree, read from git history."""
    return release_tree(PREVIOUS_RELEASE, tmp_path_factory.mktemp("previous-release"))


def _run_release(tree: Path, dsn: str, backups: Path, *args: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(tree),  # that release's packages, not today's
        "DATABASE_URL": dsn,
        "DATAARCH_VAR_DIR": str(backups.parent / "var"),
        "DATAARCH_BACKUP_DIR": str(backups),
    }
    done = subprocess.run(
        [sys.executable, "-m", *args], cwd=tree, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}


def _schema_dump(dsn: str) -> list[str]:
    bindir = find_bindir()
    assert bindir is not None
    dump = subprocess.run(
        [str(bindir / "pg_dump"), "--schema-only", "--no-owner", "--dbname", dsn],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    # pg_dump 15.14 and later add a random key on these lines
    return [
        line
        for line in dump.stdout.splitlines()
        if not line.startswith(("\\restrict", "\\unrestrict"))
    ]


def test_a_database_of_the_previous_release_upgrades_in_place(
    previous_release: Path, new_database, tmp_path: Path
) -> None:
    old, fresh = new_database(), new_database()
    backups = tmp_path / "backups"
    said = _run_release(previous_release, old, backups, "dataarch.cli", "migrate")
    assert "hired_employees.csv -> employees" in said
    with psycopg.connect(old, autocommit=True) as conn:
        ingest(conn, "employees", [employee(900_001, department_id=1, job_id=1)])
    _run_release(previous_release, old, backups, "backup", "dump")
    before = _counts(old)
    assert before["employees"] > 1000 and before["ingest_errors"] > 0

    with psycopg.connect(old) as conn:
        applied = install(conn)
        assert any(name.startswith("schema/") for name in applied)
        assert plan(conn).up_to_date
        # hire_counts folded to its new grain (schema/019) still equals a recount
        assert conn.execute("select count(*) from hire_counts").fetchone()[0] > 0
        assert conn.execute("select * from bookkeeping_problems()").fetchall() == []
    assert _counts(old) == before  # nothing lost

    with psycopg.connect(fresh) as conn:
        install(conn)
    assert _schema_dump(old) == _schema_dump(fresh)

    with psycopg.connect(old, autocommit=True) as conn:
        summary = ingest(conn, "employees", [employee(900_002), employee(900_001)])
        assert (summary["inserted"], summary["rejections"][0]["reason_code"]) == (1, "duplicate_id")
        # the old release's rejections are open, and a row with their id resolves them
        (missing_name,) = conn.execute(
            "select record_id from ingest_errors where reason_code = 'missing_field'"
            " and field = 'employee_name' and _rejection_status(ingest_errors) = 'open'"
            " order by error_id limit 1"
        ).fetchone()
        fixed = ingest(conn, "employees", [employee(missing_name, department_id=1, job_id=1)])
        assert (fixed["inserted"], fixed["resolved"]) == (1, 1)
        # a backup written by the previous release restores after the upgrade
        for table in ("departments", "jobs", "employees"):
            (path,) = backup_files(backups, table)
            assert restore_table(conn, table, path).rows == before[table]
    assert _counts(old)["employees"] == before["employees"]
