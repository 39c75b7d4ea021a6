"""dataarch migrate: CSV quirks, line-numbered rejections, re-runs, real data."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from conftest import SEED_DATA, requires_seed_data

from dataarch.generate import generate
from dataarch.migrate import TWO_SESSIONS_FROM, MigrationError, find_files, migrate_file

REFERENCE = b"1,Sales\n2,Research and Development\n"
JOBS = b"1,Data engineer\n2,Recruiter\n"


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def migrate_dir(
    conn: psycopg.Connection, csv_dir: Path, two_sessions_from: int = TWO_SESSIONS_FROM
) -> dict[str, dict]:
    return {
        table: migrate_file(conn, table, path, two_sessions_from=two_sessions_from)
        for table, path in find_files(csv_dir)
    }


# A file is judged in one session, or split between two from this many bytes.
ONE_SESSION, TWO_SESSIONS = TWO_SESSIONS_FROM, 1


@pytest.fixture
def db(postgresql: psycopg.Connection) -> psycopg.Connection:
    return postgresql


def test_crlf_quotes_utf8_blank_lines_no_final_newline(db, tmp_path) -> None:
    write(tmp_path, "departments.csv", b'\xef\xbb\xbf1,Sales\r\n\r\n2,"R&D, Labs"\r\n')
    write(tmp_path, "jobs.csv", JOBS)
    write(
        tmp_path,
        "hired_employees.csv",
        "1,Zoë Núñez,2021-01-01T00:00:00Z,1,1\r\n"
        '2,"O\'Brien, ""Ty""",2021-03-31T23:59:59Z,2,2\r\n'
        "3,😀 Emoji,2021-04-01T00:00:00Z,2,1".encode(),
    )
    summaries = migrate_dir(db, tmp_path)
    assert summaries["departments"]["inserted"] == 2
    assert summaries["departments"]["blank"] == 1
    assert summaries["employees"]["inserted"] == 3
    names = db.execute("select department_name from departments order by 1").fetchall()
    assert names == [("R&D, Labs",), ("Sales",)]
    people = db.execute("select employee_name from employees order by employee_id").fetchall()
    assert people == [("Zoë Núñez",), ('O\'Brien, "Ty"',), ("😀 Emoji",)]


@pytest.mark.parametrize("sessions", [ONE_SESSION, TWO_SESSIONS])
def test_rejected_lines_keep_file_line_and_raw_text(db, tmp_path, sessions) -> None:
    write(tmp_path, "departments.csv", REFERENCE)
    write(tmp_path, "jobs.csv", JOBS)
    write(
        tmp_path,
        "hired_employees.csv",
        b"1,Ann,2021-01-01T00:00:00Z,1,1\n"
        b"2,,2021-01-01T00:00:00Z,1,1\n"
        b"\n"
        b"3,Bob,2021-01-01T00:00:00Z,1\n"
        b'4,"Unclosed,2021-01-01T00:00:00Z,1,1\n'
        b"5,Cy,2021-01-01T00:00:00Z,7,1\n"
        b"1,Ann again,2021-01-01T00:00:00Z,1,1\n",
    )
    # two sessions: lines 1-3 here, 4-7 in the helper; line 7 repeats line 1's id
    summary = migrate_dir(db, tmp_path, sessions)["employees"]
    assert (summary["lines"], summary["blank"], summary["submitted"]) == (7, 1, 6)
    assert (summary["inserted"], summary["rejected"]) == (1, 5)
    logged = db.execute(
        "select line_number, reason_code, field, raw_line, source_file, source"
        " from ingest_errors where table_name = 'employees' order by line_number"
    ).fetchall()
    assert logged == [
        (2, "missing_field", "employee_name", "2,,2021-01-01T00:00:00Z,1,1",
         "hired_employees.csv", "csv:hired_employees.csv"),
        (4, "malformed_line", None, "3,Bob,2021-01-01T00:00:00Z,1",
         "hired_employees.csv", "csv:hired_employees.csv"),
        (5, "malformed_line", None, '4,"Unclosed,2021-01-01T00:00:00Z,1,1',
         "hired_employees.csv", "csv:hired_employees.csv"),
        (6, "unknown_department", "department_id", "5,Cy,2021-01-01T00:00:00Z,7,1",
         "hired_employees.csv", "csv:hired_employees.csv"),
        (7, "duplicate_in_batch", "employee_id", "1,Ann again,2021-01-01T00:00:00Z,1,1",
         "hired_employees.csv", "csv:hired_employees.csv"),
    ]  # fmt: skip
    messages = db.execute(
        "select message from ingest_errors where reason_code = 'malformed_line' order by 1"
    ).fetchall()
    assert messages == [
        ("line has 4 comma-separated fields; employees needs 5 (employee_id, employee_name,"
         " hiring_date, department_id, job_id)",),
        ("line has unbalanced quotes and no comma-separated fields; employees needs 5"
         " (employee_id, employee_name, hiring_date, department_id, job_id)",),
    ]  # fmt: skip


def test_two_sessions_judge_a_file_as_one_does(db, tmp_path, caplog) -> None:
    generate(tmp_path, employees=3000, bad_ratio=0.05)
    outcomes = []
    for sessions in (ONE_SESSION, TWO_SESSIONS):
        db.execute("truncate employees, departments, jobs, ingest_errors, ingest_batches,"
                   " idempotency_keys, migrated_files")  # fmt: skip
        db.commit()  # csv_lines lives until the commit
        summary = migrate_dir(db, tmp_path, sessions)["employees"]
        summary.pop("batch_id")
        rejected = db.execute(
            "select line_number, raw_line, reason_code, field, message from ingest_errors"
            " where table_name = 'employees' order by line_number"
        ).fetchall()
        loaded = db.execute("select * from table_checksum('employees')").fetchone()
        outcomes.append((summary, rejected, loaded))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0]["by_reason"]["duplicate_in_batch"] > 0
    assert "judging in one session" not in caplog.text  # the helper did its half


def test_without_a_second_session_one_judges_it_all(db, tmp_path, monkeypatch, caplog) -> None:
    path = write(tmp_path, "departments.csv", REFERENCE + b"3,Legal\n3,Legal again\n")

    def no_slot_left(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("sorry, too many clients already")

    monkeypatch.setattr(psycopg, "connect", no_slot_left)
    summary = migrate_file(db, "departments", path, two_sessions_from=TWO_SESSIONS)
    assert (summary["inserted"], summary["by_reason"]) == (3, {"duplicate_in_batch": 1})
    assert "judging in one session" in caplog.text


def test_rerun_is_a_no_op_and_new_files_append(db, tmp_path) -> None:
    write(tmp_path, "departments.csv", REFERENCE)
    first = migrate_dir(db, tmp_path)["departments"]
    again = migrate_dir(db, tmp_path)["departments"]
    assert first["status"] == "migrated"
    assert again["status"] == "already_migrated"
    assert again["batch_id"] == first["batch_id"]
    assert db.execute("select count(*) from ingest_batches").fetchone()[0] == 1

    write(tmp_path, "departments.csv", REFERENCE + b"3,Legal\n")
    appended = migrate_dir(db, tmp_path)["departments"]
    assert (appended["inserted"], appended["rejected"]) == (1, 2)
    assert appended["by_reason"] == {"duplicate_id": 2}
    assert db.execute("select count(*) from departments").fetchone()[0] == 3


@pytest.mark.parametrize(
    "content",
    [b"\x00\x01\x02\xff\xfe binary", b'{"department_id": 1, "name": "json"}\n[1, 2, 3]\n'],
)
def test_a_file_that_is_not_csv_loads_nothing(db, tmp_path, content) -> None:
    path = write(tmp_path, "departments.csv", content)
    with pytest.raises(MigrationError, match="departments.csv"):
        migrate_file(db, "departments", path)
    assert db.execute("select count(*) from ingest_batches").fetchone()[0] == 0
    assert db.execute("select count(*) from ingest_errors").fetchone()[0] == 0


def test_the_generated_sample_has_every_kind_of_bad_line(db, tmp_path) -> None:
    counts = generate(tmp_path, employees=3000, bad_ratio=0.05)
    assert counts == {"departments.csv": 12, "jobs.csv": 183, "hired_employees.csv": 3000}
    summary = migrate_dir(db, tmp_path)["employees"]
    assert summary["inserted"] + summary["rejected"] == 3000
    assert set(summary["by_reason"]) >= {
        "missing_field", "invalid_type", "out_of_range", "blank_string", "too_long",
        "invalid_datetime", "unknown_department", "unknown_job", "malformed_line",
        "duplicate_in_batch",
    }  # fmt: skip


def test_generator_is_deterministic(tmp_path) -> None:
    generate(tmp_path / "a", employees=500)
    generate(tmp_path / "b", employees=500)
    for name in ("departments.csv", "jobs.csv", "hired_employees.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@requires_seed_data()
@pytest.mark.parametrize("folder", ["globant", "beto/api/data"])
def test_real_challenge_data(db, folder) -> None:
    summaries = migrate_dir(db, SEED_DATA / folder)
    assert summaries["departments"]["inserted"] == 12
    assert summaries["jobs"]["inserted"] == 183
    assert summaries["employees"]["inserted"] == 1929
    assert summaries["employees"]["rejected"] == 70
    by_field = dict(
        db.execute(
            "select field, count(*) from ingest_errors where reason_code = 'missing_field'"
            " group by field"
        ).fetchall()
    )
    assert by_field == {"employee_name": 19, "hiring_date": 14, "department_id": 21, "job_id": 16}


def test_foreign_keys_are_back_after_a_migration(db, tmp_path) -> None:
    generate(tmp_path, employees=300)
    migrate_dir(db, tmp_path)
    keys = db.execute(
        "select conname, condeferrable, convalidated from pg_constraint"
        " where conrelid = 'employees'::regclass and contype = 'f' order by 1"
    ).fetchall()
    assert keys == [
        ("employees_department_id_fkey", True, True),
        ("employees_job_id_fkey", True, True),
    ]


def test_an_initial_load_rebuilds_the_secondary_indexes_once(db, tmp_path) -> None:
    def indexes() -> dict[str, tuple[int, str]]:
        rows = db.execute(
            "select c.relname, c.oid, pg_get_indexdef(c.oid) from pg_index as i"
            " join pg_class as c on c.oid = i.indexrelid"
            " where i.indrelid = 'employees'::regclass"
        ).fetchall()
        return {name: (oid, definition) for name, oid, definition in rows}

    generate(tmp_path, employees=100_000, bad_ratio=0.01)  # the smallest initial load
    before = indexes()
    db.commit()  # each migrate_file commits on its own only from outside a transaction
    summary = migrate_dir(db, tmp_path)["employees"]
    assert summary["inserted"] + summary["rejected"] == 100_000
    rebuilt = indexes()
    assert {n: d for n, (_, d) in rebuilt.items()} == {n: d for n, (_, d) in before.items()}
    renewed = {n for n in before if rebuilt[n][0] != before[n][0]}
    assert renewed == {"employees_department_id_idx", "employees_job_id_idx"}  # pkey kept

    assert summary["by_reason"]["unknown_department"] < 1000  # both halves saw them
    db.commit()
    write(tmp_path, "hired_employees.csv", b"100001,Late Hire,2021-05-05T10:00:00Z,1,1\n")
    assert migrate_dir(db, tmp_path)["employees"]["inserted"] == 1
    assert indexes() == rebuilt  # a small file into a large table leaves them be


def test_inside_a_transaction_one_session_judges_and_sees_it(db, tmp_path) -> None:
    db.execute("insert into departments values (1, 'Sales'); insert into jobs values (1, 'Clerk')")
    path = write(tmp_path, "hired_employees.csv", b"1,Ann,2021-01-01T00:00:00Z,1,1\n" * 2)
    summary = migrate_file(db, "employees", path, two_sessions_from=TWO_SESSIONS)
    assert (summary["inserted"], summary["by_reason"]) == (1, {"duplicate_in_batch": 1})


def test_progress_names_each_phase_and_a_rerun_reads_nothing(db, tmp_path) -> None:
    path = write(tmp_path, "departments.csv", REFERENCE)
    phases: list[str] = []
    migrate_file(db, "departments", path, progress=phases.append, two_sessions_from=TWO_SESSIONS)
    assert phases == [
        "reading 0.0 of 0.0 MB",
        "judging 2 lines in two sessions",
        "inserting and logging 2 lines",
    ]
    again: list[str] = []
    summary = migrate_file(db, "departments", path, progress=again.append)
    assert (summary["status"], again) == ("already_migrated", [])
