"""`dataarch bench` works end to end (at a tiny N: speed is measured by the
command itself, never by a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT

from bench.run import DISTRIBUTED, TARGETS


def test_bench_runs_and_reports_every_figure(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "dataarch.cli", "bench", "--rows", "2000", "--sample", "1000",
         "--json", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["rows"] == 2000
    expected = {
        "copy_raw", "copy_fk", "naive_insert", "migrate", "ingest_sql", "ingest_http",
        "http_overhead", "copy_to", "copy_from", "backup", "restore", "backup_peak_rss_mb",
        "restore_peak_rss_mb", "kpi1_ms_10k", "kpi1_ms_n", "kpi2_ms_10k", "kpi2_ms_n",
    }  # fmt: skip
    assert set(result["measurements"]) == expected
    for name, m in result["measurements"].items():
        figure = m.get("rows_per_s") or m.get("p50_ms") or m.get("value")
        assert figure and figure > 0, name
        if "seconds" in m:
            assert len(m["seconds"]) >= 3, name  # medians of at least three runs
    assert set(result["targets"]) == set(TARGETS) == set(result["ratios"])
    for target in result["targets"].values():
        assert set(target) == {"value", "target", "met"}
    assert "migrate / copy_fk" in done.stdout and "met" in done.stdout


def test_a_failed_request_stops_the_bench_and_names_the_server_log(tmp_path) -> None:
    import httpx

    from bench.run import Bench, BenchFailure

    bench = Bench(10, 0.0, 10, 3)
    failed = httpx.Response(
        503, text="busy", request=httpx.Request("POST", "http://x/tables/a/rows")
    )
    with pytest.raises(BenchFailure, match="POST /tables/a/rows answered 503") as caught:
        bench.check(failed)
    assert caught.value.log == bench.server_log
    bench.check(httpx.Response(200, request=failed.request))  # a success passes


@pytest.mark.citus
def test_bench_citus_puts_the_distributed_figures_beside(tmp_path, citus_available) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "dataarch.cli", "bench", "--rows", "2000", "--sample", "1000",
         "--citus", "--json", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    citus = json.loads(out.read_text())["citus"]
    assert set(citus) >= set(DISTRIBUTED)
    for name in DISTRIBUTED:
        assert (citus[name].get("rows_per_s") or citus[name]["p50_ms"]) > 0, name
    assert "Citus/one" in done.stdout
