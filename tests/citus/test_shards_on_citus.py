"""The shard count dataarch chooses on Citus, and the one an operator sets."""

import psycopg
import pytest
from conftest import citus_postgresql

from dataarch.installer import install

postgresql = citus_postgresql
pytestmark = pytest.mark.citus


def test_a_table_has_two_shards_a_worker(postgresql) -> None:
    workers = postgresql.execute(
        "select count(*) from pg_dist_node where groupid <> 0 and isactive"
    ).fetchone()[0]
    assert workers == 2
    shards = postgresql.execute(
        "select shard_count from citus_tables where table_name = 'employees'::regclass"
    ).fetchone()[0]
    assert shards == 2 * workers


def test_the_shard_count_an_operator_set_is_kept(citus_cluster) -> None:
    url = citus_cluster.create_database("dataarch_shards")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("alter database dataarch_shards set citus.shard_count = 6")
    with psycopg.connect(url) as conn:
        applied = install(conn)
        shards = conn.execute(
            "select shard_count from citus_tables where table_name = 'employees'::regclass"
        ).fetchone()[0]
    assert shards == 6
    assert "citus: employees: distributed by employee_id, 6 shards" in applied
