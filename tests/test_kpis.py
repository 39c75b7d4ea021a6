"""The KPI views: the published results, an independent computation at the
UTC boundaries, counts that always equal a recount, and the HTTP routes."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from datetime import UTC, datetime

import psycopg
import pytest
from conftest import AUTH, SEED_DATA, api_settings, employee, ingest, requires_seed_data
from litestar.testing import TestClient

from app import create_app
from dataarch.dictionary import read as read_dictionary
from dataarch.migrate import find_files, migrate_file

BOUNDARY_HIRES = [
    "2020-12-31T23:59:59Z",
    "2021-01-01T00:00:00Z",
    "2021-03-31T23:59:59.999999Z",
    "2021-04-01T00:00:00Z",
    "2021-04-01T03:00:00+05:00",  # 2021-03-31T22:00Z: still Q1
    "2022-01-01T02:00:00+05:00",  # 2021-12-31T21:00Z: Q4 of 2021
    "2021-09-30T23:59:59-03:00",  # 2021-10-01T02:59:59Z: Q4
]
DEPARTMENTS = ["Zeta", "alpha", "Alpha", "Ärger", "Beta", "<script>alert(1)</script>"]
JOBS = ["engineer", "Engineer", "Analyst", "Zoologist", "Éditeur"]


def expected_kpis(rows: list[dict], year: int) -> tuple[list[tuple], list[tuple]]:
    """KPI 1 and KPI 2 computed in Python from the rows, for comparison."""
    names_d = {i: n for i, n in enumerate(DEPARTMENTS, 1)}
    names_j = {i: n for i, n in enumerate(JOBS, 1)}
    quarters: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    per_department = dict.fromkeys(names_d, 0)
    for row in rows:
        hired = datetime.fromisoformat(row["hiring_date"]).astimezone(UTC)
        if hired.year == year:
            quarters[(row["department_id"], row["job_id"])][(hired.month - 1) // 3] += 1
            per_department[row["department_id"]] += 1
    kpi1 = sorted(
        ((d, names_d[d], j, names_j[j], *q) for (d, j), q in quarters.items()),
        key=lambda r: (r[1].encode(), r[3].encode(), r[0], r[2]),
    )
    mean = sum(per_department.values()) / len(per_department)
    kpi2 = sorted(
        ((d, names_d[d], n) for d, n in per_department.items() if n > mean),
        key=lambda r: (-r[2], r[0]),
    )
    return kpi1, kpi2


@pytest.fixture
def db(conn: psycopg.Connection) -> tuple[psycopg.Connection, list[dict]]:
    ingest(conn, "departments", [
        {"department_id": i, "department_name": n} for i, n in enumerate(DEPARTMENTS, 1)
    ])  # fmt: skip
    ingest(conn, "jobs", [{"job_id": i, "job_name": n} for i, n in enumerate(JOBS, 1)])
    rng = random.Random(7)
    rows = []
    for i in range(1, 1201):
        hired = BOUNDARY_HIRES[i % len(BOUNDARY_HIRES)] if i % 3 == 0 else (
            datetime(2020, 6, 1, tzinfo=UTC).timestamp() + rng.random() * 3 * 365 * 86400
        )  # fmt: skip
        if not isinstance(hired, str):
            hired = datetime.fromtimestamp(hired, UTC).isoformat()
        rows.append(employee(i, hiring_date=hired, department_id=rng.randint(1, 5),
                             job_id=rng.randint(1, 5)))  # fmt: skip
    for start in range(0, len(rows), 1000):
        assert ingest(conn, "employees", rows[start : start + 1000])["rejected"] == 0
    return conn, rows


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Kiritimati", "America/Adak"])
@pytest.mark.parametrize("year", [2020, 2021, 2022])
def test_views_equal_an_independent_computation(db, zone, year) -> None:
    conn, rows = db
    conn.execute(f"set timezone = '{zone}'")
    kpi1, kpi2 = expected_kpis(rows, year)
    assert conn.execute("select * from kpi_hires_by_quarter(%s)", (year,)).fetchall() == kpi1
    assert conn.execute("select * from kpi_departments_above_mean(%s)", (year,)).fetchall() == kpi2


def test_views_are_usable_from_psql(db) -> None:
    conn, rows = db
    kpi1, _ = expected_kpis(rows, 2021)
    total = conn.execute("select sum(q1 + q2 + q3 + q4) from hires_by_quarter where year = 2021")
    assert total.fetchone()[0] == sum(sum(r[4:]) for r in kpi1)
    assert (
        conn.execute("select count(*) from department_hires where year = 2021").fetchone()[0] == 6
    )


@pytest.mark.parametrize("year", [1990, 0, -1, 10000])
def test_a_year_without_data_is_empty(db, year) -> None:
    conn, _ = db  # hiring dates hold the years 1 to 9999 only
    assert conn.execute("select * from kpi_hires_by_quarter(%s)", (year,)).fetchall() == []
    assert conn.execute("select * from kpi_departments_above_mean(%s)", (year,)).fetchall() == []
    assert conn.execute("select * from job_hires_in_year(%s)", (year,)).fetchall() == []
    assert conn.execute("select * from department_hires_in_year(%s)", (year,)).fetchall() == []


def _join_rows(plan: dict) -> list[int]:
    below = [n for child in plan.get("Plans", []) for n in _join_rows(child)]
    joins = plan["Node Type"] in ("Hash Join", "Merge Join", "Nested Loop")
    return [plan["Actual Rows"], *below] if joins else below


def test_kpi1_names_each_department_and_job_once(db) -> None:
    """The year's counts are pivoted into a row per department and job before
    the names are joined: joining every count row (one a quarter) first made
    KPI 1 14.2 ms at a million employees, against 8.9 (2026-12-04)."""
    conn, _ = db
    query = "select * from hires_by_quarter where year = 2021"
    plan = conn.execute(f"explain (analyze, format json) {query}").fetchone()[0][0]["Plan"]
    pairs = len(conn.execute(query).fetchall())
    assert pairs > 0
    assert _join_rows(plan) and max(_join_rows(plan)) <= pairs


@pytest.mark.parametrize("function", ["job_hires_in_year", "department_hires_in_year"])
def test_a_year_is_read_through_the_index(conn, function) -> None:
    """Four full years of counts: a KPI reads its year through hire_counts'
    primary key, not by scanning every year (which the default
    random_page_cost chose when a year had a row a quarter: KPI 2 took 2.4
    ms at a million employees against 1.6 through the index, 2026-12-04), so
    a KPI costs the same however many years the table holds."""
    conn.execute("""
        insert into hire_counts (department_id, job_id, hire_year, q1, q2, q3, q4)
        select d, j, y, 1, 1, 1, 1 from generate_series(1, 12) as d,
            generate_series(1, 183) as j, generate_series(2019, 2022) as y
    """)  # the shape of a million employees' counts
    conn.execute("analyze hire_counts")
    read = [p for p in _nested_plans(conn, f"select * from {function}(2021)")
            if " on hire_counts " in p]  # fmt: skip
    assert read and all(" hire_counts_pkey" in p for p in read), read  # index or bitmap
    assert not any("Seq Scan on hire_counts" in p for p in read), read


def _nested_plans(conn: psycopg.Connection, query: str, analyze: bool = False) -> list[str]:
    """The plans auto_explain reports for query and every statement it runs."""
    plans: list[str] = []
    conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    conn.execute("load 'auto_explain'")
    conn.execute("set auto_explain.log_min_duration = 0")
    conn.execute("set auto_explain.log_nested_statements = on")
    conn.execute(f"set auto_explain.log_analyze = {'on' if analyze else 'off'}")
    conn.execute("set auto_explain.log_level = notice")
    conn.execute(query).fetchall()
    conn.execute("set auto_explain.log_min_duration = -1")
    return plans


def test_a_year_reads_a_count_row_a_department_and_job(db) -> None:
    """hire_counts keeps the KPIs' grain: a year's KPI reads one row per
    department and job, however many quarters they hired in. A row a
    quarter made KPI 1 cost 1.27x and KPI 2 1.81x as much at a million
    employees as at 10 000 (8 784 count rows a year against 3 800); 1.11x
    and 1.12x at this grain (SQL p50s, 2026-12-04)."""
    conn, _ = db
    pairs = conn.execute("select count(*) from job_hires_in_year(2021)").fetchone()[0]
    quarters = conn.execute(
        "select count(distinct (department_id, job_id, extract(quarter from hiring_date"
        " at time zone 'UTC'))) from employees where hiring_date >= '2021-01-01Z'"
        " and hiring_date < '2022-01-01Z'"
    ).fetchone()[0]
    assert quarters > pairs > 0  # some pair hired in several quarters
    plans = _nested_plans(conn, "select * from job_hires_in_year(2021)", analyze=True)
    read = [re.search(r"on hire_counts c .*actual time=\S+ rows=(\d+)", p) for p in plans]
    assert [int(m.group(1)) for m in read if m] == [pairs], plans


RECOUNT = """
    select department_id, job_id, extract(year from hiring_date at time zone 'UTC')::int,
        extract(quarter from hiring_date at time zone 'UTC')::int, count(*)
    from employees group by 1, 2, 3, 4 order by 1, 2, 3, 4
"""
COUNTS = """
    select department_id, job_id, hire_year, q.quarter::int, q.hires from hire_counts,
        unnest(array[q1, q2, q3, q4]) with ordinality as q (hires, quarter)
    where q.hires > 0 order by 1, 2, 3, 4
"""


def test_counts_always_equal_a_recount(db, tmp_path) -> None:
    from backup import backup_tables, restore_table

    conn, _ = db
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()
    conn.execute("update employees set hiring_date = hiring_date + interval '45 days'"
                 " where employee_id % 4 = 0")  # fmt: skip
    conn.execute("update employees set department_id = 6 where employee_id % 5 = 0")
    conn.execute("delete from employees where employee_id % 7 = 0")
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()
    (info,) = backup_tables(conn, ["employees"], tmp_path).files
    conn.autocommit = True
    conn.execute("truncate employees")
    assert conn.execute(COUNTS).fetchall() == []
    restore_table(conn, "employees", tmp_path / "employees" / info.file)
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()
    assert conn.execute("select refresh_hire_counts()").fetchone()[0] > 0
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()


def _row_versions(conn: psycopg.Connection) -> dict[tuple, tuple]:
    """Each count row's key -> its version (xmin, ctid): changed when it is written."""
    rows = conn.execute("select hire_year, department_id, job_id, xmin::text, ctid::text"
                        " from hire_counts").fetchall()  # fmt: skip
    return {(y, d, j): tuple(version) for y, d, j, *version in rows}


def test_a_restore_rewrites_only_the_counts_it_changes(db, tmp_path) -> None:
    """A restore replaces every employee, but it writes only the count rows
    that differ from the restored table's: deleting and adding them all left
    three dead rows a live one in hire_counts after three restores, and KPI 2
    took 3.3 ms instead of 0.8 until a vacuum (2026-12-04)."""
    from backup import backup_tables, restore_table

    conn, _ = db
    (info,) = backup_tables(conn, ["employees"], tmp_path).files
    conn.autocommit = True
    versions = _row_versions(conn)
    restore_table(conn, "employees", tmp_path / "employees" / info.file)
    assert _row_versions(conn) == versions
    year = "extract(year from hiring_date at time zone 'UTC')::int"
    (moved, old_key) = conn.execute(
        f"select employee_id, ({year}, department_id, job_id) from employees"
        " where department_id <> 6 order by employee_id limit 1"
    ).fetchone()
    (new_key,) = conn.execute(
        f"update employees set department_id = 6 where employee_id = %s"
        f" returning ({year}, department_id, job_id)", (moved,),
    ).fetchone()  # fmt: skip
    # the restore turned the count triggers off for its load only: a new row is counted
    hire = employee(9000, hiring_date="2021-05-05T00:00:00Z", department_id=1, job_id=1)
    assert ingest(conn, "employees", [hire])["inserted"] == 1
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()
    after_update = _row_versions(conn)
    restore_table(conn, "employees", tmp_path / "employees" / info.file)
    restored = _row_versions(conn)
    rewritten = {k for k in after_update.keys() | restored.keys()
                 if after_update.get(k) != restored.get(k)}  # fmt: skip
    # the moved hire's two keys and the new hire's: nothing else is written
    hired = (2021, 1, 1)  # year, department and job of the new hire
    assert rewritten == {tuple(map(int, key)) for key in (old_key, new_key, hired)}
    assert conn.execute(COUNTS).fetchall() == conn.execute(RECOUNT).fetchall()


def test_http_json_and_csv(db, dsn) -> None:
    conn, rows = db
    kpi1, kpi2 = expected_kpis(rows, 2021)
    with TestClient(create_app(api_settings(dsn))) as client:
        as_json = client.get("/kpis/hires-by-quarter", params={"year": 2021}, headers=AUTH)
        assert as_json.status_code == 200
        assert list(as_json.json()[0]) == [
            "department_id", "department", "job_id", "job", "Q1", "Q2", "Q3", "Q4"
        ]  # fmt: skip
        assert [tuple(r.values()) for r in as_json.json()] == kpi1
        as_csv = client.get(
            "/kpis/hires-by-quarter?year=2021", headers={**AUTH, "Accept": "text/csv"}
        )
        assert as_csv.headers["content-type"].startswith("text/csv")
        parsed = list(csv.reader(io.StringIO(as_csv.text)))
        assert parsed[0] == ["department_id", "department", "job_id", "job", "Q1", "Q2", "Q3", "Q4"]
        assert [(int(di), d, int(ji), j, *map(int, q)) for di, d, ji, j, *q in parsed[1:]] == kpi1
        second = client.get("/kpis/departments-above-mean?year=2021&format=csv", headers=AUTH)
        parsed = list(csv.reader(io.StringIO(second.text)))
        assert parsed[0] == ["id", "department", "hired"]
        assert [(int(i), d, int(n)) for i, d, n in parsed[1:]] == kpi2
        assert client.get("/kpis/departments-above-mean?year=1990", headers=AUTH).json() == []
        bad = client.get("/kpis/hires-by-quarter?year=twenty", headers=AUTH)
        assert bad.status_code == 400 and bad.json()["status"] == 400
        assert client.get("/kpis/hires-by-quarter").status_code == 401


@requires_seed_data()
def test_published_results_on_the_real_data(postgresql, dsn) -> None:
    for table, path in find_files(read_dictionary(postgresql), SEED_DATA / "globant"):
        migrate_file(postgresql, table, path)
    postgresql.commit()
    postgresql.autocommit = True
    postgresql.execute("set timezone = 'America/Los_Angeles'")  # must not matter
    for name, function, expected_file in [
        ("hires-by-quarter", "kpi_hires_by_quarter", "expected_kpi1.csv"),
        ("departments-above-mean", "kpi_departments_above_mean", "expected_kpi2.csv"),
    ]:
        expected = list(csv.reader((SEED_DATA / "globant" / expected_file).open()))
        columns = ", ".join(c.lower() for c in expected[0])  # the ids beside are extra
        got = postgresql.execute(f"select {columns} from {function}(2021)").fetchall()
        assert [[str(v) for v in row] for row in got] == expected[1:]
        with TestClient(create_app(api_settings(dsn))) as client:
            served = client.get(f"/kpis/{name}?format=csv", headers=AUTH).text
        table = list(csv.reader(io.StringIO(served)))
        keep = [table[0].index(c) for c in expected[0]]
        assert [[row[i] for i in keep] for row in table] == expected
    assert len(got) == 7


def test_departments_of_one_name_are_told_apart(conn, tmp_path) -> None:
    from reports import write_reports

    ingest(conn, "departments", [{"department_id": 1, "department_name": "Staff"},
                                 {"department_id": 2, "department_name": "Staff"}])  # fmt: skip
    ingest(conn, "jobs", [{"job_id": 1, "job_name": "Recruiter"}])
    ingest(conn, "employees", [employee(1, department_id=1, job_id=1),
                               employee(2, department_id=2, job_id=1)])  # fmt: skip
    rows = conn.execute("select department_id, department, job_id from kpi_hires_by_quarter(2021)")
    assert rows.fetchall() == [(1, "Staff", 1), (2, "Staff", 1)]
    page = (write_reports(conn, 2021, tmp_path)[1]).read_text()
    assert "Staff (#1)" in page and "Staff (#2)" in page
