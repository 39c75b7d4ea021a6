"""dataarch installs and runs as a database owner that is not a superuser
(as on managed PostgreSQL), and the per-batch reference check skips the
foreign keys' per-row triggers only where that loses nothing, and only for
a batch large enough for it to pay."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import dataarch, employee, ingest, load_reference_rows

from dataarch.generate import generate
from dataarch.installer import install
from dataarch.migrate import migrate_file
from dataarch.pgserver import Cluster


@pytest.fixture
def owner_dsn(test_cluster: Cluster) -> Iterator[str]:
    """An empty database owned by a role with CREATEROLE and nothing more."""
    owner = f"owner_{secrets.token_hex(4)}"
    with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
        admin.execute(f"create role {owner} login createrole nosuperuser")
        admin.execute(f"create database {owner} owner {owner}")
    test_cluster.map_role(owner)  # peer authentication: our OS user may be it too
    dsn = test_cluster.conninfo(owner, user=owner)
    with psycopg.connect(dsn) as conn:
        install(conn)
    yield dsn
    with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
        admin.execute(f"drop database {owner} with (force)")
        admin.execute(f"drop role {owner}")


def test_the_owner_installs_ingests_and_the_foreign_keys_hold(owner_dsn: str) -> None:
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        superuser = "select rolsuper from pg_roles where rolname = current_user"
        assert conn.execute(superuser).fetchone()[0] is False
        assert conn.execute("select _skips_row_triggers('employees')").fetchone()[0] is False
        load_reference_rows(conn)
        rows = [employee(1), employee(2, department_id=99), employee(1)]
        result = ingest(conn, "employees", rows)
        assert (result["inserted"], result["rejected"]) == (1, 2)
        assert [r["reason_code"] for r in result["rejections"]] == [
            "unknown_department",
            "duplicate_in_batch",
        ]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("delete from departments where department_id = 1")


def test_the_owner_migrates_backs_up_and_restores(owner_dsn: str, tmp_path: Path) -> None:
    generate(tmp_path / "csv", employees=3000, bad_ratio=0.02)
    migrated = dataarch(owner_dsn, "migrate", "--csv-dir", str(tmp_path / "csv"))
    assert migrated.returncode == 0, migrated.stderr
    with psycopg.connect(owner_dsn, autocommit=True) as conn:
        before = conn.execute("select count(*), sum(employee_id) from employees").fetchone()
        assert before[0] > 2800
        backups = str(tmp_path / "backups")
        made = dataarch(owner_dsn, "backup", "employees", DATAARCH_BACKUP_DIR=backups)
        assert made.returncode == 0, made.stderr
        conn.execute("delete from employees where employee_id % 2 = 0")
        restored = dataarch(owner_dsn, "restore", "employees", DATAARCH_BACKUP_DIR=backups)
        assert restored.returncode == 0, restored.stderr
        assert conn.execute("select count(*), sum(employee_id) from employees").fetchone() == before


def test_replica_mode_never_skips_a_trigger_of_our_own(conn: psycopg.Connection) -> None:
    """A superuser's batch skips the per-row RI triggers, but a trigger that
    is not ENABLE ALWAYS makes it keep them all, so that one still fires."""
    assert conn.execute("select _skips_row_triggers('employees')").fetchone()[0] is True
    load_reference_rows(conn)
    conn.execute("create table audit (employee_id integer)")
    conn.execute("""
        create function audit_insert() returns trigger language plpgsql as $$
        begin insert into audit values (new.employee_id); return null; end $$
    """)  # fmt: skip
    conn.execute(
        "create trigger employees_audit after insert on employees"
        " for each row execute function audit_insert()"
    )
    assert conn.execute("select _skips_row_triggers('employees')").fetchone()[0] is False
    assert ingest(conn, "employees", [employee(1), employee(2)])["inserted"] == 2
    assert conn.execute("select count(*) from audit").fetchone()[0] == 2


def _row_trigger_checks(
    conn: psycopg.Connection, act: Callable[[], object], parent: str = "departments"
) -> int:
    """How many per-row foreign key checks on `parent` ran while `act` ran
    on conn: auto_explain logs every statement, the triggers' own
    (`SELECT 1 FROM ONLY "public"."departments" x ...`) among them."""
    logged: list[str] = []
    conn.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting in (
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "client_min_messages = log",
    ):
        conn.execute(f"set {setting}")
    act()
    conn.execute("reset client_min_messages")
    conn.execute("reset auto_explain.log_min_duration")
    return sum(f'FROM ONLY "public"."{parent}" x' in text for text in logged)


def test_only_a_large_batch_skips_the_row_triggers(conn: psycopg.Connection) -> None:
    """Skipping the foreign keys' per-row triggers (session_replication_role)
    empties the session's plan cache, which costs more than the triggers
    below the batch size _skipping_row_triggers_pays names: a smaller batch
    lets them check each row, a larger one checks its references once."""
    load_reference_rows(conn)
    assert conn.execute("select _skips_row_triggers('employees')").fetchone()[0]
    pays_from = conn.execute(
        "select min(n) from generate_series(1, 1000) as n where _skipping_row_triggers_pays(n)"
    ).fetchone()[0]
    assert 1 < pays_from < 1000
    small = [employee(i) for i in range(1, pays_from)]
    large = [employee(i) for i in range(10_001, 10_001 + pays_from)]
    assert _row_trigger_checks(conn, lambda: ingest(conn, "employees", small)) == len(small)
    assert _row_trigger_checks(conn, lambda: ingest(conn, "employees", large)) == 0
    assert conn.execute("select count(*) from employees").fetchone()[0] == len(small) + len(large)


def test_only_a_file_of_many_rejections_skips_the_logs_row_triggers(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    """A file's rejections are logged with their reasons' foreign key checked
    a row at a time, unless they are as many as _skipping_row_triggers_pays
    names: then the reasons are locked once and the triggers skipped. Either
    way every rejection is logged, and its batch and reason exist."""
    load_reference_rows(conn)
    pays_from = conn.execute(
        "select min(n) from generate_series(1, 1000) as n where _skipping_row_triggers_pays(n)"
    ).fetchone()[0]

    def migrated(rejections: int) -> tuple[int, dict]:
        """The reason checks the triggers ran for a file of `rejections`
        rejected lines (and one good one), and its summary."""
        path = tmp_path / str(rejections) / "hired_employees.csv"
        path.parent.mkdir()
        path.write_text(f"{rejections},Good,2021-07-27T16:02:08Z,1,1\n" + "x\n" * rejections)
        found: list[dict] = []
        act = lambda: found.append(migrate_file(conn, "employees", path))  # noqa: E731
        return _row_trigger_checks(conn, act, "reason_codes"), found[0]

    for rejections, checks in [(pays_from - 1, pays_from - 1), (pays_from, 0)]:
        ran, summary = migrated(rejections)
        assert ran == checks
        assert (summary["inserted"], summary["rejected"]) == (1, rejections)
        logged = conn.execute(
            "select count(*) from ingest_errors as e join ingest_batches using (batch_id)"
            " join reason_codes using (reason_code) where e.batch_id = %s",
            (summary["batch_id"],),
        ).fetchone()[0]
        assert logged == rejections
