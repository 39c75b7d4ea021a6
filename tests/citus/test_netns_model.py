"""The namespace model of `dataarch bench --citus --netns-delay-ms` (issue
29): each node in a network namespace of its own, the nodes reaching a
worker only through its delaying proxy; the product works there as on the
loopback, and every namespace goes with the model. Root only; under
CI=true its absence is a failure, like Citus's."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from conftest import IN_CI, employee, ingest, load_reference_rows

from bench import netns
from dataarch.citus import CitusCluster, free_ports
from dataarch.installer import install

pytestmark = pytest.mark.citus
DELAY_MS = 2.0


@pytest.fixture
def model_url(citus_available: None, tmp_path: Path):
    if why := netns.available():
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    tmp_path.chmod(0o755)  # the postgres user reaches the nodes' directories
    base = free_ports(2, start=9880)
    with netns.namespace_model(2, base, DELAY_MS) as placements:
        cluster = CitusCluster(tmp_path / "model", base, workers=1, placements=placements)
        try:
            cluster.start()
            url = cluster.create_database("model")
            with psycopg.connect(url) as conn:
                install(conn)
            yield url, placements
        finally:
            cluster.destroy()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(p.netns in names for p in placements), names


def test_the_worker_is_reached_through_its_proxy_and_takes_the_rows(model_url) -> None:
    url, placements = model_url
    with psycopg.connect(url, autocommit=True) as conn:
        worker = conn.execute(
            "select nodename, nodeport from pg_dist_node where groupid <> 0"
        ).fetchall()
        assert worker == [placements[1].reached_at]
        assert placements[1].reached_at[0] == placements[1].address  # in the worker's namespace
        load_reference_rows(conn)
        result = ingest(conn, "employees", [employee(i) for i in range(1, 101)])
        assert (result["inserted"], result["rejected"]) == (100, 0)
        on_worker = conn.execute(
            "select sum(result::bigint) from run_command_on_shards("
            "'employees', 'select count(*) from %s')"
        ).fetchone()[0]
        assert on_worker == 100
        # a statement the worker answers crosses the proxy at least there and back
        start = time.perf_counter()
        conn.execute("select count(*) from employees").fetchone()
        assert time.perf_counter() - start >= 2 * DELAY_MS / 1000
