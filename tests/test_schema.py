"""The schema: idempotent install, named constraints, least privilege."""

from __future__ import annotations

import psycopg
import pytest
from conftest import employee, ingest, load_reference_rows

from dataarch.installer import install, schema_version


def test_second_install_changes_nothing(conn) -> None:
    version = schema_version(conn)
    conn.autocommit = False
    assert install(conn) == []
    assert schema_version(conn) == version != "none"


def test_every_constraint_the_log_names_exists(conn) -> None:
    names = {
        row[0]
        for row in conn.execute(
            "select _constraint_for(t, f, r) from unnest(array['departments', 'jobs',"
            " 'employees']) t, unnest(_table_columns(t)) f, reason_codes rc(r)"
        ).fetchall()
        if row[0]
    }
    existing = {row[0] for row in conn.execute("select conname from pg_constraint").fetchall()}
    assert names and names <= existing


@pytest.mark.parametrize(
    ("column_values", "constraint"),
    [
        ("(0, 'x')", "departments_id_positive"),
        ("(1, '')", "departments_name_not_blank"),
        ("(1, ' x')", "departments_name_trimmed"),
        ("(1, repeat('x', 201))", "departments_name_max_length"),
    ],
)
def test_constraints_refuse_what_the_rules_reject(conn, column_values, constraint) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        conn.execute(f"insert into departments values {column_values}")


def test_foreign_keys_are_deferrable(conn) -> None:
    rows = conn.execute(
        "select conname, condeferrable from pg_constraint where contype = 'f'"
        " and conrelid = 'employees'::regclass order by 1"
    ).fetchall()
    assert rows == [("employees_department_id_fkey", True), ("employees_job_id_fkey", True)]


@pytest.mark.parametrize(
    "statement",
    [
        "insert into departments values (50, 'Sneaky')",
        "update departments set department_name = 'x'",
        "delete from employees",
        "truncate jobs",
        "drop table jobs",
        "insert into ingest_errors (batch_id, table_name, row_index, raw_row, reason_code,"
        " message, source) values (1, 'jobs', 0, '{}', 'null_value', 'x', 'api')",
        "select _insert_rows('jobs', 1)",
        "select _ingest_rows('jobs', '[]', false, 1)",
        # the per-row foreign key checks are skipped only inside _insert_rows
        "set session_replication_role = replica",
    ],
)
def test_api_role_cannot_write_directly(dsn, conn, statement) -> None:
    load_reference_rows(conn)
    api_dsn = dsn.replace("user=postgres", "user=dataarch_api")
    with psycopg.connect(api_dsn) as api, pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.execute(statement)


def test_api_role_can_ingest_and_read(dsn, conn) -> None:
    load_reference_rows(conn)
    with psycopg.connect(dsn.replace("user=postgres", "user=dataarch_api"), autocommit=True) as api:
        assert ingest(api, "employees", [employee(1)])["inserted"] == 1
        assert api.execute("select count(*) from employees").fetchone()[0] == 1


@pytest.mark.parametrize(
    "rule",
    ["_presence_problem(t)", "_id_problem(s, t)", "_name_problem(s, t)",
     "_datetime_problem(s, t)", "_usual_datetime_problem(s)", "_any_datetime_problem(s)",
     "_day_exists(s)"],
)  # fmt: skip
def test_the_field_rules_are_inlined(conn, rule) -> None:
    """An immutable SQL rule that calls a merely stable function (a cast to
    timestamptz, say) is no longer inlined: one function call a row, which
    nearly doubled a batch's time. The plan must show the expression itself."""
    conn.execute("create temp table fields (s text, t text)")  # nothing to fold to a constant
    plan = conn.execute(f"explain (verbose, costs off) select {rule} from fields").fetchall()
    text = "\n".join(row[0] for row in plan)
    assert rule.split("(")[0] not in text, text


# A relation a distributed database spreads or copies over its nodes.
_CITUS_RELATIONS = (
    "departments|jobs|employees|hire_counts|hires_by_quarter|department_hires"
    "|departments_above_mean"
)
_READS_ONE = rf"\m(from|join)\s+({_CITUS_RELATIONS})\M"


def test_no_sql_language_function_reads_a_table_citus_distributes(conn) -> None:
    """Citus cannot plan a parameterised SQL function over a distributed table
    ("could not create distributed plan"), inlined or not: such a function
    must be PL/pgSQL (procedures/README.md)."""
    query = (
        "select p.proname from pg_proc as p join pg_language as l on l.oid = p.prolang"
        " where p.pronamespace = 'public'::regnamespace and l.lanname = 'sql'"
        " and p.prosrc ~* %s order by 1"
    )
    assert conn.execute(query, (_READS_ONE,)).fetchall() == []
    conn.execute("create function probe() returns bigint language sql as $$"
                 " select count(*) from employees $$")  # fmt: skip
    assert conn.execute(query, (_READS_ONE,)).fetchall() == [("probe",)]  # the check can fail
