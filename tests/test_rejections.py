"""Rejected rows that get fixed: open until a later batch inserts their id
(resolved) or someone closes them; reject files to edit and send again;
rejected CSV lines judged again once their parents arrived."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import (
    AUTH,
    JSON_AUTH,
    PROJECT,
    dataarch,
    employee,
    ingest,
    load_reference_rows,
)

from dataarch.migrate import migrate_file


def statuses(conn: psycopg.Connection, table: str = "employees") -> dict[str, int]:
    rows = conn.execute(
        "select _rejection_status(e), count(*) from ingest_errors as e"
        " where table_name = %s group by 1",
        (table,),
    ).fetchall()
    return dict(rows)


def test_a_later_row_with_the_id_resolves_the_rejection(conn) -> None:
    load_reference_rows(conn)
    first = ingest(conn, "employees", [employee(1, employee_name=""), employee(2), {"x": 1}])
    assert statuses(conn) == {"open": 2}
    second = ingest(conn, "employees", [employee(1), employee(3)])
    assert (second["inserted"], second["resolved"]) == (2, 1)
    resolved = conn.execute(
        "select record_id, resolved_by_batch from ingest_errors where resolved_at is not null"
    ).fetchall()
    assert resolved == [(1, second["batch_id"])]
    # a rejection is never resolved by its own batch, and one without an id stays open
    third = ingest(conn, "employees", [employee(4, job_id=99), employee(4)])
    assert (third["inserted"], third["resolved"]) == (1, 0)
    assert statuses(conn) == {"open": 2, "resolved": 1}
    assert first["batch_id"] < second["batch_id"]


def test_a_rejection_is_resolved_at_either_end_of_a_batchs_ids(conn) -> None:
    """A batch looks for open rejections between its lowest and highest id
    before it probes them id by id: ids at either end, or one id alone,
    still resolve theirs, and an open rejection inside the range that none
    of its ids carries stays open."""
    load_reference_rows(conn)
    ingest(conn, "employees", [employee(i, employee_name="") for i in (10, 15, 20, 30)])
    assert ingest(conn, "employees", [employee(3), employee(10)])["resolved"] == 1
    assert ingest(conn, "employees", [employee(16), employee(20)])["resolved"] == 1
    assert ingest(conn, "employees", [employee(12), employee(18)])["resolved"] == 0  # 15 between
    assert ingest(conn, "employees", [employee(30)])["resolved"] == 1
    still_open = conn.execute(
        "select record_id from ingest_errors where resolved_at is null order by 1"
    ).fetchall()
    assert still_open == [(15,)]


def test_a_csv_file_resolves_the_open_rejections_of_the_ids_it_inserts(conn, tmp_path) -> None:
    """A file passes only the ids an open rejection carries to be resolved:
    it resolves those of other batches, never its own, and counts every row
    it inserted."""
    load_reference_rows(conn)
    earlier = ingest(conn, "employees", [employee(5, employee_name=""), employee(6, job_id=99)])
    path = tmp_path / "hired_employees.csv"
    path.write_text(
        "5,Fixed,2021-01-01T00:00:00Z,1,1\n"  # resolves batch 1's rejection of 5
        "6,,2021-01-01T00:00:00Z,1,1\n"  # rejected again: 6 stays open, twice
        "7,New,2021-01-01T00:00:00Z,1,1\n"
        "8,Eight,2021-01-01T00:00:00Z,1,99\n"  # its own rejection, not resolved by 8
        "8,Eight again,2021-01-01T00:00:00Z,1,1\n"
    )
    done = migrate_file(conn, "employees", path)
    assert (done["inserted"], done["rejected"], done["resolved"]) == (3, 2, 1)
    assert conn.execute(
        "select inserted, rejected, submitted from ingest_batches where batch_id = %s",
        (done["batch_id"],),
    ).fetchone() == (3, 2, 5)
    assert statuses(conn) == {"open": 3, "resolved": 1}
    resolved = conn.execute(
        "select record_id, batch_id, resolved_by_batch from ingest_errors"
        " where resolved_at is not null"
    ).fetchall()
    assert resolved == [(5, earlier["batch_id"], done["batch_id"])]


def test_closing_needs_a_note_and_says_who(conn) -> None:
    load_reference_rows(conn)
    ingest(conn, "employees", [{"x": 1}, {"y": 2}])
    ids = [r[0] for r in conn.execute("select error_id from ingest_errors order by 1")]
    with pytest.raises(psycopg.Error, match="needs a note"):
        conn.execute("select close_rejections(%s, '')", (ids,))
    result = conn.execute(
        "select close_rejections(%s, 'junk from a test', 'ana')", (ids[:1] + [999],)
    )
    assert result.fetchone()[0] == {"closed": ids[:1], "not_open": [], "unknown": [999]}
    assert conn.execute("select closed_by, close_note from ingest_errors where error_id = %s",
                        (ids[0],)).fetchone() == ("ana", "junk from a test")  # fmt: skip
    assert statuses(conn) == {"closed": 1, "open": 1}


def test_export_fix_resend_resolved(server, dsn, conn, tmp_path: Path) -> None:
    """The worked example of the README, on the project's sample data."""
    assert dataarch(dsn, "migrate").returncode == 0
    open_before = statuses(conn)["open"]
    out = tmp_path / "rejects"
    done = dataarch(dsn, "rejections", "export", "employees", "--out", str(out), "--open",
                    "--url", server)  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = (out / "employees.reject.csv").read_text().splitlines()
    log = list(csv.reader(io.StringIO((out / "employees.reject.log").read_text())))
    assert log[0] == [
        "record", "batch_id", "source", "position", "reason_code", "field", "message", "received"
    ]  # fmt: skip
    assert len(log) - 1 == open_before and len(records) <= open_before
    missing = [(n, row) for n, row in enumerate(log[1:]) if row[4] == "missing_field" and row[0]]
    assert missing
    # fix the lines that lack a name, and send the file again as it is
    fixed = []
    for line in records:
        fields = next(csv.reader([line]))
        if len(fields) == 5 and not fields[1]:
            fields[1] = "Fixed Name"
        fixed.append(fields)
    repaired = [f for f in fixed if len(f) == 5 and f[1] == "Fixed Name"]
    (out / "employees.fixed.csv").write_text("".join(f"{','.join(f)}\n" for f in repaired))
    sent = dataarch(dsn, "ingest", "employees", str(out / "employees.fixed.csv"), "--url", server)
    assert sent.returncode == 0, sent.stderr
    assert f"{len(repaired)} inserted, 0 rejected" in sent.stdout
    assert f"{len(repaired)} earlier rejection(s) resolved" in sent.stdout
    assert statuses(conn)["open"] == open_before - len(repaired)
    listed = httpx.get(f"{server}/tables/employees/rejections?status=resolved", headers=AUTH)
    assert listed.json()["total"] == len(repaired)
    assert all(i["status"] == "resolved" for i in listed.json()["items"])


def test_api_rows_are_written_in_column_order(server, conn) -> None:
    load_reference_rows(conn)
    body = [
        {"job_id": 1, "employee_id": 10, "department_id": 1, "employee_name": "",
         "hiring_date": "2021-01-01T00:00:00Z"},
        ["11", "Ann", "2021-01-01T00:00:00Z", "9", "1"],
        "12,unreadable \\xe9",
        42,
    ]  # fmt: skip
    assert httpx.post(f"{server}/tables/employees/rows", json=body, headers=JSON_AUTH).json()[
        "rejected"] == 4  # fmt: skip
    text = httpx.get(f"{server}/tables/employees/rejections?format=csv", headers=AUTH)
    assert text.headers["content-type"].startswith("text/csv")
    assert text.text == (
        "10,,2021-01-01T00:00:00Z,1,1\n11,Ann,2021-01-01T00:00:00Z,9,1\n"
    )  # the string and the number are not rows of the table: in the log only


def test_close_over_http_and_from_the_command_line(server, dsn, conn) -> None:
    load_reference_rows(conn)
    ingest(conn, "employees", [{"x": 1}, {"y": 2}, {"z": 3}])
    ids = [str(r[0]) for r in conn.execute("select error_id from ingest_errors order by 1")]
    done = dataarch(dsn, "rejections", "close", ids[0], "--note", "bad test rows", "--by", "bo",
                    "--url", server)  # fmt: skip
    assert done.returncode == 0 and f"closed: {ids[0]}" in done.stdout, done.stderr
    again = dataarch(dsn, "rejections", "close", ids[0], "--note", "again", "--url", server)
    assert f"not open (resolved or closed already): {ids[0]}" in again.stdout
    usage = dataarch(dsn, "rejections", "close", ids[1], "--url", server)
    assert usage.returncode == 2 and "--note" in usage.stderr
    answer = httpx.post(f"{server}/rejections/close", headers=JSON_AUTH,
                        json={"ids": [int(ids[1])], "note": "seen"})  # fmt: skip
    assert answer.json()["closed"] == [int(ids[1])]
    listed = dataarch(dsn, "rejections", "employees", "--open", "--url", server)
    assert "1 of 1 shown" in listed.stdout and f"#{ids[2]}" in listed.stdout


def test_rows_migrated_before_their_parents_load_when_judged_again(
    dsn, conn, new_database, tmp_path
) -> None:
    """The order trap: employees first, then departments and jobs."""
    (tmp_path / "hired_employees.csv").write_bytes(
        (PROJECT / "data" / "historical" / "hired_employees.csv").read_bytes()
    )
    first = dataarch(dsn, "migrate", "--csv-dir", str(tmp_path))
    assert "unknown_department" in first.stdout
    for name in ("departments.csv", "jobs.csv"):
        (tmp_path / name).write_bytes((PROJECT / "data" / "historical" / name).read_bytes())
    second = dataarch(dsn, "migrate", "--csv-dir", str(tmp_path))
    assert "hired_employees.csv -> employees: already migrated" in second.stdout
    retried = dataarch(dsn, "migrate", "--retry-rejected")
    assert retried.returncode == 0, retried.stderr
    assert "employees: " in retried.stdout and "rejections resolved" in retried.stdout
    # what loads is what a migration in the right order loads
    in_order = new_database()
    assert dataarch(in_order, "migrate").returncode == 0
    ids = "select employee_id, employee_name from employees order by 1"
    with psycopg.connect(in_order) as other:
        assert conn.execute(ids).fetchall() == other.execute(ids).fetchall()
        open_reasons = (
            "select reason_code, count(*) from ingest_errors as e where table_name = 'employees'"
            " and _rejection_status(e) = 'open' group by 1 order by 1"
        )
        assert conn.execute(open_reasons).fetchall() == other.execute(open_reasons).fetchall()
