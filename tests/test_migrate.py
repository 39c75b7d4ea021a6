"""dataarch migrate: CSV quirks, line-numbered rejections, re-runs, real data."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import psycopg
import pytest
from conftest import SEED_DATA, dataarch, load_reference_rows, requires_seed_data

from dataarch import migrate
from dataarch.csvrecords import Dialect
from dataarch.dictionary import read as read_dictionary
from dataarch.generate import generate
from dataarch.migrate import MigrationError, find_files, migrate_file

REFERENCE = b"1,Sales\n2,Research and Development\n"
JOBS = b"1,Data engineer\n2,Recruiter\n"


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def migrate_dir(
    conn: psycopg.Connection, csv_dir: Path, sessions: int = 1, progress: list | None = None
) -> dict[str, dict]:
    """Each file judged by `sessions` sessions, however small it is."""
    return {
        table: migrate_file(
            conn,
            table,
            path,
            progress=None if progress is None else progress.append,
            sessions=sessions,
            several_from=0,
        )  # fmt: skip
        for table, path in find_files(read_dictionary(conn), csv_dir)
    }


ONE_SESSION, TWO_SESSIONS = 1, 2


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
        ("a quoted field opened on this line is not closed by the end of the file",),
        ("line has 4 comma-separated fields; employees needs 5 (employee_id, employee_name,"
         " hiring_date, department_id, job_id)",),
    ]  # fmt: skip


# 3000 lines go the way of any file; 100 000 into an empty table are an
# initial load (the table held alone, its indexes rebuilt once).
@pytest.mark.parametrize("lines", [3000, 100_000])
def test_one_two_and_four_sessions_give_the_same_outcome(db, tmp_path, lines) -> None:
    generate(tmp_path, employees=lines, bad_ratio=0.05)
    outcomes = []
    for sessions in (1, 2, 4):
        db.commit()  # Citus truncates no table a transaction has read in parallel
        db.execute("truncate employees, departments, jobs, ingest_errors, ingest_batches,"
                   " idempotency_keys, migrated_files")  # fmt: skip
        db.commit()  # csv_lines lives until the commit
        phases: list[str] = []
        summary = migrate_dir(db, tmp_path, sessions, phases)["employees"]
        summary.pop("batch_id")
        rejected = db.execute(
            "select line_number, raw_line, reason_code, field, message, constraint_name"
            " from ingest_errors where table_name = 'employees' order by line_number"
        ).fetchall()
        loaded = db.execute(  # the data: lineage names other batches each time
            "select * from relation_checksum('employees', to_jsonb(_table_columns('employees')))"
        ).fetchone()
        counted = db.execute(
            "select count(*), sum(hires) from hire_counts having sum(hires) = "
            "(select count(*) from employees)"
        ).fetchone()
        outcomes.append((summary, rejected, loaded, counted))
        if sessions > 1:  # every session judged its share
            assert f"judging {lines:,} lines in {sessions} sessions" in phases
    assert outcomes[0] == outcomes[1] == outcomes[2]
    summary = outcomes[0][0]
    assert summary["inserted"] + summary["rejected"] == lines
    assert {"duplicate_in_batch", "unknown_department", "unknown_job"} <= set(summary["by_reason"])
    assert outcomes[0][3] is not None  # hire_counts adds up to the table


@pytest.mark.parametrize("sessions", [1, 2, 3, 4])
def test_the_first_session_judges_fewer_pieces_for_expanding_them_all(sessions) -> None:
    """Each piece is judged by one session; the first, which also expands every
    piece, is given less to judge, so that all of them finish together (to
    within a piece of work), and the helpers share the rest evenly."""
    pieces = 1000
    judges = list(islice(migrate._judging_sessions(sessions), pieces))
    counts = [judges.count(k) for k in range(sessions)]
    assert sum(counts) == pieces and min(counts) > 0
    if sessions == 1:
        return
    extra = migrate.EXPANDING_PER_JUDGING
    first = counts[0] + extra * pieces
    for helper in counts[1:]:
        assert abs(first - helper * (1 + extra)) <= 1 + extra
    assert counts[0] < pieces / sessions
    assert max(counts[1:]) - min(counts[1:]) <= 1


def test_sessions_are_bounded_by_free_connection_slots(db, tmp_path, monkeypatch) -> None:
    generate(tmp_path, employees=3000, bad_ratio=0.05)
    assert db.execute(migrate.FREE_SLOTS).fetchone()[0] > 4  # the real count
    db.commit()
    # the server has 4 free slots (other tests share it, so the real count moves)
    monkeypatch.setattr(migrate, "FREE_SLOTS", "select 4")
    phases: list[str] = []
    summary = migrate_dir(db, tmp_path, 8, phases)["employees"]
    assert summary["inserted"] + summary["rejected"] == 3000
    assert "judging 3,000 lines in 3 sessions" in phases  # 4 free, 2 kept free: 2 helpers


def test_without_a_second_session_one_judges_it_all(db, tmp_path, monkeypatch, caplog) -> None:
    path = write(tmp_path, "departments.csv", REFERENCE + b"3,Legal\n3,Legal again\n")

    def no_slot_left(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("sorry, too many clients already")

    monkeypatch.setattr(psycopg, "connect", no_slot_left)
    summary = migrate_file(db, "departments", path, sessions=2, several_from=0)
    assert (summary["inserted"], summary["by_reason"]) == (3, {"duplicate_in_batch": 1})
    assert "judging in 1 session(s): no more (sorry, too many clients already)" in caplog.text


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


def test_an_initial_load_rebuilds_the_indexes_once(db, tmp_path) -> None:
    def indexes() -> dict[str, tuple[int, str]]:
        rows = db.execute(
            "select c.relname, c.oid, pg_get_indexdef(c.oid) from pg_index as i"
            " join pg_class as c on c.oid = i.indexrelid"
            " where i.indrelid = 'employees'::regclass"
        ).fetchall()
        return {name: (oid, definition) for name, oid, definition in rows}

    keys = "select oid, conname from pg_constraint where conrelid = 'employees'::regclass"
    generate(tmp_path, employees=100_000, bad_ratio=0.01)  # an initial load, on Citus too
    before, keys_before = indexes(), db.execute(keys + " and contype = 'f'").fetchall()
    db.commit()  # each migrate_file commits on its own only from outside a transaction
    summary = migrate_dir(db, tmp_path)["employees"]
    assert summary["inserted"] + summary["rejected"] == 100_000
    # the foreign keys are kept where their per-row triggers may be skipped
    # (else dropped and added again: Citus), and no row is an orphan
    kept = db.execute("select _skips_row_triggers('employees')").fetchone()[0]
    assert (db.execute(keys + " and contype = 'f'").fetchall() == keys_before) == kept
    orphans = db.execute(
        "select count(*) from employees as e where not exists (select from departments as d"
        " where d.department_id = e.department_id) or not exists (select from jobs as j"
        " where j.job_id = e.job_id)"
    ).fetchone()[0]
    assert (orphans, summary["by_reason"]["unknown_job"] > 0) == (0, True)
    rebuilt = indexes()
    assert {n: d for n, (_, d) in rebuilt.items()} == {n: d for n, (_, d) in before.items()}
    renewed = {n for n in before if rebuilt[n][0] != before[n][0]}
    assert renewed == {  # the primary key too: no other table's key needs it
        "employees_pkey",
        "employees_department_id_idx",
        "employees_job_id_idx",
        "employees_batch_id_idx",
    }

    assert summary["by_reason"]["unknown_department"] < 1000  # both halves saw them
    db.commit()
    write(tmp_path, "hired_employees.csv", b"100001,Late Hire,2021-05-05T10:00:00Z,1,1\n")
    assert migrate_dir(db, tmp_path)["employees"]["inserted"] == 1
    assert indexes() == rebuilt  # a small file into a large table leaves them be


def test_an_initial_load_starts_at_the_records_initial_load_from_names(db, tmp_path) -> None:
    """Into an empty table, a file of _initial_load_from() records rebuilds the
    indexes (each gets a new oid); one of a record fewer keeps them. Records,
    not lines: a blank line does not count."""
    indexes = (
        "select array_agg(indexrelid order by indexrelid) from pg_index"
        " where indrelid = 'employees'::regclass"
    )
    smallest = db.execute("select _initial_load_from()").fetchone()[0]
    load_reference_rows(db)
    db.commit()
    for records, rebuilt in [(smallest - 1, False), (smallest, True)]:
        db.execute(
            "truncate employees, ingest_errors, migrated_files, idempotency_keys, ingest_batches"
        )
        db.commit()
        before = db.execute(indexes).fetchone()[0]
        rows = b"".join(
            b"%d,Hire %d,2021-01-01T00:00:00Z,1,1\n" % (n, n) for n in range(1, records + 1)
        )
        path = write(tmp_path, "hired_employees.csv", rows + b"\n\n")
        summary = migrate_file(db, "employees", path)
        assert (summary["inserted"], summary["blank"]) == (records, 2)
        after = db.execute(indexes).fetchone()[0]
        assert (set(after).isdisjoint(before), after == before) == (rebuilt, not rebuilt), records


def test_an_initial_load_keeps_a_primary_key_other_tables_reference(db, tmp_path) -> None:
    key = "select indexrelid from pg_index where indrelid = 'departments'::regclass"
    before = db.execute(key).fetchall()
    db.commit()
    lines = b"".join(b"%d,Department %d\n" % (n, n) for n in range(1, 100_001))
    path = write(tmp_path, "departments.csv", lines + b"7,Again\n")
    summary = migrate_file(db, "departments", path)
    assert (summary["inserted"], summary["by_reason"]) == (100_000, {"duplicate_in_batch": 1})
    assert db.execute(key).fetchall() == before  # employees' key into it needs it


def test_inside_a_transaction_one_session_judges_and_sees_it(db, tmp_path) -> None:
    db.execute("insert into departments values (1, 'Sales'); insert into jobs values (1, 'Clerk')")
    path = write(tmp_path, "hired_employees.csv", b"1,Ann,2021-01-01T00:00:00Z,1,1\n" * 2)
    summary = migrate_file(db, "employees", path, sessions=2, several_from=0)
    assert (summary["inserted"], summary["by_reason"]) == (1, {"duplicate_in_batch": 1})


def test_progress_names_each_phase_and_a_rerun_reads_nothing(db, tmp_path) -> None:
    path = write(tmp_path, "departments.csv", REFERENCE)
    phases: list[str] = []
    migrate_file(db, "departments", path, progress=phases.append, sessions=2, several_from=0)
    assert phases == [
        "reading 0.0 of 0.0 MB",
        "judging 2 lines in 2 sessions",
        "inserting and logging 2 lines",
    ]
    again: list[str] = []
    summary = migrate_file(db, "departments", path, progress=again.append)
    assert (summary["status"], again) == ("already_migrated", [])


# -- records exactly as files hold them: every line accounted for ---------------------

EMPLOYEE = "{},Person {},2021-01-01T00:00:00Z,1,1\n"


def employees_file(tmp_path: Path, content: bytes) -> Path:
    write(tmp_path, "departments.csv", REFERENCE)
    write(tmp_path, "jobs.csv", JOBS)
    return write(tmp_path, "hired_employees.csv", content)


def rejections(db: psycopg.Connection) -> list[tuple]:
    return db.execute(
        "select line_number, reason_code, raw_line, message from ingest_errors"
        " where table_name = 'employees' order by line_number"
    ).fetchall()


def accounted(summary: dict) -> int:
    return summary["lines"] - summary["header"] - summary["blank"]


@pytest.mark.parametrize("sessions", [ONE_SESSION, TWO_SESSIONS])
def test_a_line_holding_only_backslash_dot_is_one_more_record(db, tmp_path, sessions) -> None:
    employees_file(
        tmp_path, b"1,Ann,2021-01-01T00:00:00Z,1,1\n\\.\n3,Cid,2021-03-01T00:00:00Z,1,1\n"
    )
    summary = migrate_dir(db, tmp_path, sessions)["employees"]
    assert (summary["lines"], summary["inserted"], summary["rejected"]) == (3, 2, 1)
    assert [r[:3] for r in rejections(db)] == [(2, "malformed_line", "\\.")]


def test_an_end_marker_in_a_large_file_ends_nothing(db, tmp_path) -> None:
    lines = [EMPLOYEE.format(i, i) for i in range(1, 60_001)]
    lines.insert(30_000, "\\.\n")
    employees_file(tmp_path, "".join(lines).encode())
    summary = migrate_dir(db, tmp_path, TWO_SESSIONS)["employees"]
    assert (summary["lines"], summary["inserted"], summary["rejected"]) == (60_001, 60_000, 1)
    assert [r[0] for r in rejections(db)] == [30_001]


def test_control_bytes_are_data_never_quotes(db, tmp_path) -> None:
    employees_file(tmp_path, b"1,Ann\x02\n\x02,2021-01-01T00:00:00Z,1,1\n"
                             b"3,Cid\x01,2021-01-01T00:00:00Z,1,1\n"
                             b"4,Dee,2021-01-01T00:00:00Z,9,1\n")  # fmt: skip
    summary = migrate_dir(db, tmp_path)["employees"]
    assert (summary["lines"], summary["inserted"], summary["rejected"]) == (4, 1, 3)
    assert [r[:2] for r in rejections(db)] == [
        (1, "malformed_line"), (2, "malformed_line"), (4, "unknown_department")
    ]  # fmt: skip
    assert db.execute("select employee_name from employees").fetchone() == ("Cid\x01",)


@pytest.mark.parametrize(
    ("line", "reason", "message"),
    [
        (
            b"2,N\x00ul,2021-01-01T00:00:00Z,1,1",
            "invalid_character",
            "employee_name contains a NUL",
        ),
        (
            b"2,Jos\xe9,2021-01-01T00:00:00Z,1,1",
            "malformed_line",
            "bytes not valid utf-8 at byte 6",
        ),
        (b"2,\x93Quoted\x94,2021-01-01T00:00:00Z,1,1", "malformed_line", "not valid utf-8"),
        (b'2,O"Brien,2021-01-01T00:00:00Z,1,1', "malformed_line", "inside an unquoted field"),
        (b'2,"Ty"x,2021-01-01T00:00:00Z,1,1', "malformed_line", "followed by 'x'"),
    ],
)
def test_one_bad_record_is_one_rejection_and_the_rest_loads(
    db, tmp_path, line, reason, message
) -> None:
    employees_file(
        tmp_path, b"1,Ann,2021-01-01T00:00:00Z,1,1\n" + line + b"\n3,Cy,2021-01-01T00:00:00Z,1,1\n"
    )
    summary = migrate_dir(db, tmp_path)["employees"]
    assert (summary["lines"], summary["inserted"], summary["rejected"]) == (3, 2, 1)
    ((number, found, raw, said),) = rejections(db)
    assert (number, found) == (2, reason) and message in said
    assert "\x00" not in raw and ("\\xe9" in raw if b"\xe9" in line else True)


def test_a_crlf_line_in_an_lf_file_and_a_bom(db, tmp_path) -> None:
    employees_file(tmp_path, b"\xef\xbb\xbf1,Ann,2021-01-01T00:00:00Z,1,1\n"
                             b"2,Bo,2021-01-01T00:00:00Z,1,1\r\n"
                             b"3,Cy,2021-01-01T00:00:00Z,1,1")  # fmt: skip
    summary = migrate_dir(db, tmp_path)["employees"]
    assert (summary["lines"], summary["inserted"]) == (3, 3)
    names = db.execute("select employee_name from employees order by 1").fetchall()
    assert names == [("Ann",), ("Bo",), ("Cy",)]


@pytest.mark.parametrize("sessions", [ONE_SESSION, TWO_SESSIONS])
def test_quoted_fields_hold_delimiters_quotes_and_line_breaks(db, tmp_path, sessions) -> None:
    write(tmp_path, "departments.csv", b'700,"Finance\nand Ops"\r\n701,"R&D, ""Labs"""\n'
                                       b'702,"Two\r\nlines"\n703,x,y\n')  # fmt: skip
    summary = migrate_dir(db, tmp_path, sessions)["departments"]
    assert (summary["lines"], summary["records"], summary["inserted"]) == (6, 4, 3)
    names = db.execute("select department_name from departments order by 1").fetchall()
    assert names == [("Finance\nand Ops",), ('R&D, "Labs"',), ("Two\r\nlines",)]
    assert db.execute("select line_number, reason_code from ingest_errors").fetchall() == [
        (6, "malformed_line")  # physical line 6, after two records of two lines each
    ]


def test_an_unclosed_quote_costs_one_line(db, tmp_path) -> None:
    employees_file(tmp_path, b'1,"Ann,2021-01-01T00:00:00Z,1,1\n' + "".join(
        EMPLOYEE.format(i, i) for i in range(2, 6)).encode())  # fmt: skip
    summary = migrate_dir(db, tmp_path)["employees"]
    assert (summary["lines"], summary["inserted"], summary["rejected"]) == (5, 4, 1)
    assert [r[:2] for r in rejections(db)] == [(1, "malformed_line")]


@pytest.mark.parametrize(
    ("dialect", "content", "inserted"),
    [
        (Dialect(delimiter=";"), b'1;"Ann; Smith";2021-01-01T00:00:00Z;1;1\n', ["Ann; Smith"]),
        (Dialect(encoding="latin1"), b"1,Jos\xe9,2021-01-01T00:00:00Z,1,1\n", ["José"]),
        (Dialect(encoding="windows-1252"), b"1,\x93Q\x94,2021-01-01T00:00:00Z,1,1\n", ["“Q”"]),
        (Dialect(header=True), b"id,name,date,d,j\n1,Ann,2021-01-01T00:00:00Z,1,1\n", ["Ann"]),
        # a header that names the columns is found without being announced
        (Dialect(), b"employee_id,employee_name,hiring_date,department_id,job_id\r\n"
                    b"1,Ann,2021-01-01T00:00:00Z,1,1\r\n", ["Ann"]),
    ],
)  # fmt: skip
def test_options_for_what_files_differ_in(db, tmp_path, dialect, content, inserted) -> None:
    write(tmp_path, "departments.csv", REFERENCE)
    write(tmp_path, "jobs.csv", JOBS)
    for table, path in find_files(read_dictionary(db), tmp_path):
        migrate_file(db, table, path)
    summary = migrate_file(db, "employees", write(tmp_path, "e.csv", content), dialect=dialect)
    assert summary["rejected"] == 0 and summary["lines"] == accounted(summary) + summary["header"]
    names = db.execute("select employee_name from employees order by 1").fetchall()
    assert [n for (n,) in names] == inserted


def test_a_helper_that_cannot_judge_there_judges_here(db, monkeypatch) -> None:
    db.commit()
    monkeypatch.setattr(migrate, "ON_CITUS", "select true")
    monkeypatch.setattr(migrate, "CITUS_WORKERS", "select '127.0.0.1', 9")  # nothing listens
    [session] = migrate._helpers(db, 1)
    try:
        assert (session.info.host, session.info.port) == (db.info.host, db.info.port)
        assert session.execute(migrate.JUDGE_EXISTS).fetchone()[0]  # and it may judge
    finally:
        session.close()


@pytest.mark.parametrize("lines", [50, 60_000])  # one session judges; several (over 2 MiB)
def test_a_load_waiting_for_a_table_it_reads_names_it(conn, dsn, tmp_path, lines) -> None:
    """Judging reads the tables a file's rows reference. A load that waits
    for one of them (a restore holds it) says which, and who holds it, as a
    wait for the table it writes does, however many sessions judge the file
    (found by the soak test: several sessions said only "lock timeout")."""
    load_reference_rows(conn)
    rows = "".join(f"{i},Person {i},2021-01-01T00:00:00Z,1,1\n" for i in range(1, lines + 1))
    write(tmp_path, "hired_employees.csv", rows.encode())
    with psycopg.connect(dsn) as holder:
        holder.execute("set application_name = 'dataarch restore'")
        holder.execute("lock table departments in access exclusive mode")
        said = dataarch(dsn, "migrate", "--csv-dir", str(tmp_path), DATAARCH_LOCK_TIMEOUT="1")
    assert said.returncode == 4, said.stderr
    assert "departments is busy: dataarch restore (pid" in said.stderr, said.stderr
    assert "nothing was loaded" in said.stderr, said.stderr
    assert conn.execute("select count(*) from employees").fetchone() == (0,)
    assert dataarch(dsn, "migrate", "--csv-dir", str(tmp_path)).returncode == 0
    assert conn.execute("select count(*) from employees").fetchone() == (lines,)


def test_a_copy_out_is_read_whole_in_chunks_and_its_error_raised(db) -> None:
    """The helpers' verdicts are read from libpq a megabyte at a time
    (migrate._copied_out): the bytes are COPY's own, and a COPY that fails
    raises its own error, leaving the session usable once rolled back."""
    copy = "copy (select g, repeat('x', g % 50) from generate_series(1, 60000) as g) to stdout"
    with db.cursor().copy(copy) as out:
        expected = b"".join(bytes(chunk) for chunk in out)
    chunks = list(migrate._copied_out(db, copy))
    assert len(chunks) > 1 and b"".join(chunks) == expected
    with pytest.raises(psycopg.errors.DivisionByZero):
        list(migrate._copied_out(db, "copy (select 1 / (g - 5) from generate_series(1, 9) as g)"
                                     " to stdout"))  # fmt: skip
    db.rollback()
    assert db.execute("select 1").fetchone() == (1,)
