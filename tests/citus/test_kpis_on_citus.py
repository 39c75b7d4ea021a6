"""The KPIs on Citus: the PostgreSQL tier's computations at the UTC
boundaries, and each KPI one aggregate the shards compute (no intermediate
result through the coordinator)."""

import psycopg
import pytest
from conftest import citus_postgresql, employee, ingest, release_tree
from test_kpis import (  # noqa: F401 - collected again, here, with their `db` fixture
    db,
    expected_kpis,
    test_a_year_without_data_is_empty,
    test_views_are_usable_from_psql,
    test_views_equal_an_independent_computation,
)

from dataarch.installer import install

postgresql = citus_postgresql
pytestmark = pytest.mark.citus
# The last commit whose hire_counts kept a row a quarter (before schema/019).
BEFORE_HIRE_COUNTS_BY_YEAR = "ca282ae"
KPIS = (
    "select * from kpi_hires_by_quarter(2021)",
    "select * from kpi_departments_above_mean(2021)",
)


def test_each_kpi_is_one_aggregate_the_shards_compute(db) -> None:  # noqa: F811 - the fixture
    conn, rows = db
    # Citus refuses a query that would pass an intermediate result (a
    # subquery it computes first, on the coordinator) beyond this size
    conn.execute("set citus.max_intermediate_result_size = 0")
    kpi1, kpi2 = expected_kpis(rows, 2021)
    assert conn.execute("select * from kpi_hires_by_quarter(2021)").fetchall() == kpi1
    assert conn.execute("select * from kpi_departments_above_mean(2021)").fetchall() == kpi2


def test_a_citus_database_keeps_its_kpis_across_the_hire_counts_grain_change(
    citus_cluster, tmp_path
) -> None:
    """schema/019 remakes hire_counts a row a year, department and job; on
    Citus, where it is a view over employees, the upgrade drops the view and
    the install's distribute step makes it again in the new shape."""
    release = release_tree(BEFORE_HIRE_COUNTS_BY_YEAR, tmp_path)
    url = citus_cluster.create_database("hire_counts_grain")
    with psycopg.connect(url, autocommit=True) as conn:
        install(conn, release)
        conn.execute("insert into departments values (1, 'Sales'), (2, 'Staff')")
        conn.execute("insert into jobs values (1, 'Analyst')")
        ingest(conn, "employees", [
            employee(i, hiring_date=f"2021-{i % 12 + 1:02}-15T00:00:00Z",
                     department_id=i % 2 + 1, job_id=1)
            for i in range(1, 40)
        ])  # fmt: skip
        kpis = [conn.execute(q).fetchall() for q in KPIS]
        applied = install(conn)
        assert "citus: hire_counts: a view over employees" in applied
        assert [conn.execute(q).fetchall() for q in KPIS] == kpis
        assert conn.execute("select sum(q1), sum(hires) from hire_counts").fetchone() == (11, 39)
