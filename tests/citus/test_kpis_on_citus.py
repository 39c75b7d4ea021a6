"""The KPIs on Citus: the PostgreSQL tier's computations at the UTC
boundaries, and each KPI one aggregate the shards compute (no intermediate
result through the coordinator)."""

import pytest
from conftest import citus_postgresql
from test_kpis import (  # noqa: F401 - collected again, here, with their `db` fixture
    db,
    expected_kpis,
    test_a_year_without_data_is_empty,
    test_views_are_usable_from_psql,
    test_views_equal_an_independent_computation,
)

postgresql = citus_postgresql
pytestmark = pytest.mark.citus


def test_each_kpi_is_one_aggregate_the_shards_compute(db) -> None:  # noqa: F811 - the fixture
    conn, rows = db
    # Citus refuses a query that would pass an intermediate result (a
    # subquery it computes first, on the coordinator) beyond this size
    conn.execute("set citus.max_intermediate_result_size = 0")
    kpi1, kpi2 = expected_kpis(rows, 2021)
    assert conn.execute("select * from kpi_hires_by_quarter(2021)").fetchall() == kpi1
    assert conn.execute("select * from kpi_departments_above_mean(2021)").fetchall() == kpi2
