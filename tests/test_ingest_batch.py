"""ingest_batch: every reason code, the invariant, refusals, atomic mode."""

from __future__ import annotations

import json

import psycopg
import pytest
from conftest import employee, ingest, load_reference_rows
from psycopg.types.json import Jsonb

BAD_EMPLOYEES = [
    # (row overrides or whole row, reason_code, field)
    ({"employee_name": None}, "null_value", "employee_name"),
    ({"employee_id": "12a"}, "invalid_type", "employee_id"),
    ({"employee_id": 1.5}, "invalid_type", "employee_id"),
    ({"employee_id": True}, "invalid_type", "employee_id"),
    ({"job_id": {"id": 2}}, "invalid_type", "job_id"),
    ({"employee_name": 42}, "invalid_type", "employee_name"),
    ({"hiring_date": 1627401728}, "invalid_type", "hiring_date"),
    ({"employee_id": 0}, "out_of_range", "employee_id"),
    ({"employee_id": -7}, "out_of_range", "employee_id"),
    ({"employee_id": 2147483648}, "out_of_range", "employee_id"),
    ({"department_id": 10**30}, "out_of_range", "department_id"),
    ({"employee_id": "-3"}, "out_of_range", "employee_id"),
    ({"employee_name": "   "}, "blank_string", "employee_name"),
    ({"employee_name": "x" * 201}, "too_long", "employee_name"),
    ({"hiring_date": "2021-02-30T10:00:00Z"}, "invalid_datetime", "hiring_date"),
    ({"hiring_date": "2021-07-27T16:02:08"}, "invalid_datetime", "hiring_date"),
    ({"hiring_date": "27/07/2021 16:02"}, "invalid_datetime", "hiring_date"),
    ({"hiring_date": "2021-07-27T24:00:00Z"}, "invalid_datetime", "hiring_date"),
    ({"hiring_date": "2021-07-27T23:59:60Z"}, "invalid_datetime", "hiring_date"),
    ({"hiring_date": "2023-02-29T00:00:00Z"}, "invalid_datetime", "hiring_date"),
    ({"department_id": 99}, "unknown_department", "department_id"),
    ({"job_id": 99}, "unknown_job", "job_id"),
    ({"salary": 10}, "unexpected_field", "salary"),
]


@pytest.fixture
def db(conn: psycopg.Connection) -> psycopg.Connection:
    load_reference_rows(conn)
    return conn


@pytest.mark.parametrize(("change", "reason", "field"), BAD_EMPLOYEES)
def test_each_rule_rejects_and_logs(db, change, reason, field) -> None:
    bad = {**employee(2), **change}
    result = ingest(db, "employees", [employee(1), bad])
    assert (result["submitted"], result["inserted"], result["rejected"]) == (2, 1, 1)
    assert result["rejections"][0]["index"] == 1
    assert result["rejections"][0]["reason_code"] == reason
    assert result["rejections"][0]["field"] == field
    assert field in result["rejections"][0]["message"]
    logged = db.execute(
        "select reason_code, field, raw_row, row_index, source, message from ingest_errors"
        " where batch_id = %s",
        (result["batch_id"],),
    ).fetchall()
    assert logged == [(reason, field, bad, 1, "psql", result["rejections"][0]["message"])]
    assert db.execute("select array_agg(employee_id) from employees").fetchone()[0] == [1]


def test_missing_field(db) -> None:
    row = employee(1)
    del row["hiring_date"]
    result = ingest(db, "employees", [row])
    assert result["rejections"][0]["reason_code"] == "missing_field"
    assert result["rejections"][0]["field"] == "hiring_date"


def test_rows_are_objects_or_records(db) -> None:
    """A row is an object keyed by column name, or a record: the array of its
    fields in column order, judged as the same CSV line would be (null is an
    empty field). A string is a record its sender could not read."""
    result = ingest(db, "jobs", [
        [11, "Data engineer"], ["12", "Recruiter"], ["13", None], [14], "15,Nurse", None, 16,
    ])  # fmt: skip
    assert result["inserted"] == 2
    assert [(r["index"], r["reason_code"], r["field"]) for r in result["rejections"]] == [
        (2, "missing_field", "job_name"),
        (3, "malformed_line", None),
        (4, "malformed_line", None),
        (5, "invalid_type", None),
        (6, "invalid_type", None),
    ]
    assert result["rejections"][3]["message"].startswith("row must be a JSON object keyed by")


def test_first_broken_rule_in_column_order_wins(db) -> None:
    result = ingest(db, "employees", [{**employee(1), "employee_id": -1, "employee_name": ""}])
    assert result["rejections"][0]["reason_code"] == "out_of_range"
    assert result["rejections"][0]["field"] == "employee_id"


def test_duplicates_in_batch_and_in_table(db) -> None:
    ingest(db, "employees", [employee(1)])
    result = ingest(db, "employees", [employee(1), employee(2), employee(2), employee(3)])
    reasons = {r["index"]: r["reason_code"] for r in result["rejections"]}
    assert reasons == {0: "duplicate_id", 2: "duplicate_in_batch"}
    constraint = db.execute(
        "select constraint_name from ingest_errors where reason_code = 'duplicate_id'"
    ).fetchone()[0]
    assert constraint == "employees_pkey"


def test_an_invalid_row_does_not_claim_its_id(db) -> None:
    """The first *valid* row with an id wins, not the first row."""
    result = ingest(db, "employees", [employee(5, employee_name=""), employee(5)])
    assert result["inserted"] == 1
    assert result["rejections"][0]["reason_code"] == "blank_string"


def test_every_spelling_of_an_id_the_rule_accepts_is_stored_as_its_integer(db) -> None:
    spellings = [" 7 ", "+8", "0009", "00000000000010", 11.0, 1.2e1, "2147483647", 13]
    rows = [employee(i, department_id=1, job_id=1) for i in range(1, len(spellings) + 1)]
    for row, spelling in zip(rows, spellings, strict=True):
        row["employee_id"] = spelling
    result = ingest(db, "employees", rows)
    assert (result["inserted"], result["rejections"]) == (len(spellings), [])
    stored = db.execute("select employee_id from employees order by 1").fetchall()
    assert [r[0] for r in stored] == [7, 8, 9, 10, 11, 12, 13, 2147483647]


def test_values_are_normalised(db) -> None:
    rows = [
        employee(1, employee_name="  Zoë  O'Brien\t", hiring_date="2021-07-27T18:02:08+02:00"),
        employee("2", department_id="3", job_id=1.0, hiring_date="2021-01-01 00:00:00.5z"),
    ]
    assert ingest(db, "employees", rows)["inserted"] == 2
    stored = db.execute(
        "select employee_id, employee_name, hiring_date::text, department_id, job_id"
        " from employees order by 1"
    ).fetchall()
    assert stored == [
        (1, "Zoë  O'Brien", "2021-07-27 16:02:08+00", 1, 2),
        (2, "Marcelo Gonzalez", "2021-01-01 00:00:00.5+00", 3, 1),
    ]


@pytest.mark.parametrize(
    ("payload", "sqlstate"),
    [
        ({"table": "nope", "rows": [{}]}, "DAT01"),
        ({"table": "employees;DROP TABLE jobs", "rows": [{}]}, "DAT01"),
        ({"table": "jobs", "rows": {"job_id": 1}}, "DAT02"),
        ({"table": "jobs"}, "DAT02"),
        ({"rows": []}, "DAT02"),
        ([1, 2], "DAT02"),
        ({"table": "jobs", "rows": [], "mode": "per_row"}, "DAT03"),
        ({"table": "jobs", "rows": [{"job_id": 1, "job_name": "x"}] * 1001}, "DAT03"),
        ({"table": "jobs", "rows": [{"job_id": 1, "job_name": "x"}], "mode": "all"}, "DAT02"),
        ({"table": "jobs", "rows": [{"job_id": 1, "job_name": "x"}], "extra": 1}, "DAT02"),
    ],
)
def test_whole_batch_refusals_write_nothing(db, payload, sqlstate) -> None:
    before = db.execute("select count(*) from ingest_batches").fetchone()[0]
    with pytest.raises(psycopg.Error) as info:
        db.execute("select ingest_batch(%s)", (Jsonb(payload),))
    assert info.value.sqlstate == sqlstate
    assert info.value.diag.message_primary
    assert db.execute("select count(*) from ingest_batches").fetchone()[0] == before
    assert db.execute("select count(*) from jobs").fetchone()[0] == 3


def test_batch_size_message_names_the_count(db) -> None:
    with pytest.raises(psycopg.Error, match="this one has 1001"):
        ingest(db, "jobs", [{"job_id": i, "job_name": "x"} for i in range(1, 1002)])


def test_a_full_batch_of_1000(db) -> None:
    rows = [employee(i) for i in range(1, 1001)]
    result = ingest(db, "employees", rows)
    assert (result["inserted"], result["rejected"]) == (1000, 0)


def test_batches_judge_in_the_same_files(db) -> None:
    """A batch empties the session's judged_rows without new files (a
    TRUNCATE would create three and unlink three every batch), and the next
    batch, in the same transaction or the next, sees none of its rows."""

    def files() -> int:
        return db.execute("select pg_relation_filenode('pg_temp.judged_rows')").fetchone()[0]

    with db.transaction():
        first = ingest(db, "employees", [employee(i) for i in range(1, 1001)])
        before = files()
        second = ingest(db, "employees", [employee(i) for i in range(1001, 2001)])
        assert (first["inserted"], second["inserted"], second["rejected"]) == (1000, 1000, 0)
        assert db.execute("select count(*) from pg_temp.judged_rows").fetchone()[0] == 0
        assert files() == before
    third = ingest(db, "employees", [employee(i) for i in range(2001, 3001)])
    assert third["inserted"] == 1000 and files() == before


def test_many_batches_in_one_transaction_leave_judged_rows_bounded(db) -> None:
    """The rows a batch deletes from judged_rows stay until the transaction
    commits; past 8 MB the table is truncated instead, so the 150th batch
    of one transaction does not read past 149 000 deleted rows."""
    sizes = []
    with db.transaction():
        for start in range(1, 150_001, 1000):
            result = ingest(db, "employees", [employee(i) for i in range(start, start + 1000)])
            assert result["inserted"] == 1000
            size = db.execute("select pg_relation_size('pg_temp.judged_rows')").fetchone()[0]
            sizes.append(size)
    assert 0 < max(sizes) <= 9 * 1024 * 1024
    assert db.execute("select count(*) from employees").fetchone()[0] == 150_000


def test_atomic_mode_all_or_nothing(db) -> None:
    rows = [employee(1), employee(2, employee_name=""), employee(3)]
    result = ingest(db, "employees", rows, mode="atomic")
    assert (result["inserted"], result["rejected"]) == (0, 3)
    reasons = [r["reason_code"] for r in result["rejections"]]
    assert reasons == ["atomic_batch_rejected", "blank_string", "atomic_batch_rejected"]
    assert db.execute("select count(*) from employees").fetchone()[0] == 0
    assert db.execute("select count(*) from ingest_errors").fetchone()[0] == 3
    good = ingest(db, "employees", [employee(1), employee(3)], mode="atomic")
    assert good["inserted"] == 2


def test_atomic_mode_undoes_inserts_when_an_id_is_taken(db) -> None:
    ingest(db, "employees", [employee(2)])
    result = ingest(db, "employees", [employee(1), employee(2)], mode="atomic")
    assert [r["reason_code"] for r in result["rejections"]] == [
        "atomic_batch_rejected",
        "duplicate_id",
    ]
    assert db.execute("select array_agg(employee_id) from employees").fetchone()[0] == [2]


def test_batches_table_accounts_for_every_row(db) -> None:
    ingest(db, "employees", [employee(1), employee(2, job_id=None), employee(1)])
    row = db.execute(
        "select table_name, source, mode, submitted, inserted, rejected, finished_at is not null"
        " from ingest_batches order by batch_id desc limit 1"
    ).fetchone()
    assert row == ("employees", "psql", "per_row", 3, 1, 2, True)


def test_the_invariant_is_a_constraint(db) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="ingest_batches_counts_add_up"):
        db.execute(
            "insert into ingest_batches (table_name, source, submitted, inserted, rejected,"
            " finished_at) values ('jobs', 'psql', 3, 1, 1, now())"
        )


def test_typed_overload_records_the_source(db) -> None:
    result = db.execute(
        "select ingest_batch('jobs', %s, 'per_row', 'api')",
        (Jsonb([{"job_id": 9, "job_name": ""}]),),
    ).fetchone()[0]
    assert result["rejected"] == 1
    assert db.execute("select source from ingest_errors").fetchone()[0] == "api"


def test_nul_characters_are_a_clean_rejection(db) -> None:
    body = json.dumps([employee(1, employee_name="Ann\x00"), employee(2, employee_name="a\\u0000")])
    assert "\\u0000" in body
    result = db.execute("select ingest_batch_json('employees', %s)", (body,)).fetchone()[0]
    assert result["rejections"] == [
        {
            "index": 0,
            "field": "employee_name",
            "reason_code": "invalid_character",
            "message": "employee_name contains a NUL character (\\u0000), which PostgreSQL"
            " text cannot hold",
        }
    ]
    assert db.execute("select employee_name from employees").fetchone()[0] == "a\\u0000"


def test_body_that_is_not_json(db) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("select ingest_batch_json('employees', %s)", ("[{,",))


@pytest.mark.parametrize(
    ("hiring_date", "reason"),
    [
        ("9999-12-31T23:59:59-14:00", "datetime_out_of_range"),  # year 10000 in UTC
        ("0001-01-01T00:00:00+14:00", "datetime_out_of_range"),  # 1 BC in UTC
        ("9999-12-31T23:59:59Z", None),
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31T09:59:59-14:00", None),
    ],
)
def test_only_instants_a_backup_can_store_are_accepted(conn, hiring_date, reason) -> None:
    load_reference_rows(conn)
    result = ingest(conn, "employees", [employee(1, hiring_date=hiring_date)])
    found = [r["reason_code"] for r in result["rejections"]]
    assert found == ([reason] if reason else [])
    if reason:
        message = result["rejections"][0]["message"]
        assert message == "hiring_date must be an instant in the years 0001 to 9999 in UTC"
        with pytest.raises(psycopg.errors.CheckViolation, match="employees_hiring_date_in_range"):
            conn.execute("insert into employees values (1, 'x', %s, 1, 1)", (hiring_date,))


@pytest.mark.parametrize(
    ("field", "number", "reason"),
    [
        ("employee_id", "1e131071", "out_of_range"),
        ("employee_id", "-1.5e300", "out_of_range"),
        ("employee_id", "1.00000000000000000000001", "invalid_type"),
        ("employee_id", "7.000000000000000000000000", None),
        ("department_id", "1e131071", "out_of_range"),
        ("employee_name", "1e131071", "invalid_type"),
        ("hiring_date", "1e131071", "invalid_type"),
    ],
)
@pytest.mark.parametrize("entry", ["ingest_batch_json", "ingest_batch"])
def test_a_number_of_any_exponent_is_judged_without_writing_it_out(
    db, entry, field, number, reason
) -> None:
    """1e131071 is 8 bytes of JSON and 131 072 digits written out: 1000 such
    rows once cost seconds of database time (issue 29). Judged by a short
    text of the same verdict; the log keeps the row as it came."""
    row = json.dumps({**employee(7), field: "HUGE"}).replace('"HUGE"', number)
    rows = f"[{','.join([row] * 1000)}]"
    result = db.execute(f"select {entry}('employees', %s)", (rows,)).fetchone()[0]
    assert result["submitted"] == 1000
    if reason is None:
        assert result["inserted"] == 1 and result["rejections"][0]["reason_code"] == (
            "duplicate_in_batch"
        )
        return
    assert result["rejected"] == 1000
    assert {(r["reason_code"], r["field"]) for r in result["rejections"]} == {(reason, field)}
    (logged,) = db.execute(
        "select (raw_row -> %s) = %s::jsonb from ingest_errors where batch_id = %s limit 1",
        (field, number, result["batch_id"]),
    ).fetchone()
    assert logged
