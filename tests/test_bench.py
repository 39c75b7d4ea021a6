"""`dataarch bench` works end to end (at a tiny N: speed is measured by the
command itself, never by a timed test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PROJECT

from bench import pgloader
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
    expected = {"pgloader"} if pgloader.available() else set()
    expected |= {
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
    for target in result["targets"].values():
        assert set(target) == {"value", "target", "met"}
    assert "migrate / copy_fk" in done.stdout and "met" in done.stdout
    # CI installs pgloader (.ci/system-deps); elsewhere its row says it is missing
    if pgloader.available() or os.environ.get("CI") == "true":
        assert result["measurements"]["pgloader"]["rows_per_s"] > 0
        assert set(result["targets"]) == set(TARGETS) == set(result["ratios"])
    else:
        assert set(result["targets"]) == set(TARGETS) - {"migrate / pgloader"}
        assert "migrate / pgloader" in done.stdout and "not on the PATH" in done.stdout


def test_pgloader_reaches_a_unix_socket_and_keeps_the_password_out_of_its_file() -> None:
    url, env = pgloader.target_url("host=/tmp/run port=5433 dbname=bench user=me")
    assert (url, env) == ("postgresql://me@unix:/tmp/run:5433/bench", {})
    url, env = pgloader.target_url("postgresql://me:s3cr%40t@db.example:6543/bench")
    assert (url, env) == ("postgresql://me@db.example:6543/bench", {"PGPASSWORD": "s3cr@t"})
    assert "s3cr" not in pgloader.command_file(PROJECT / "x.csv", url)


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


def test_a_failed_request_ends_the_bench_with_the_server_log_tail(
    tmp_path, monkeypatch, capsys
) -> None:
    import argparse

    from bench import __main__ as bench_cli
    from bench.run import Bench, BenchFailure

    def fails(self: Bench, keep_server_log) -> dict:
        keep_server_log.write_text("".join(f"line {n}\n" for n in range(30)) + "boom: 500\n")
        raise BenchFailure("POST /tables/employees/rows answered 500: oops", keep_server_log)

    monkeypatch.setattr(Bench, "run", fails)
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    status = bench_cli.run(parser.parse_args(["--rows", "10", "--json", str(tmp_path / "b.json")]))
    said = capsys.readouterr().err
    assert status == 1
    assert "answered 500: oops" in said and "boom: 500" in said  # the log's last lines
    assert "line 29" in said and "line 5\n" not in said  # its tail, not all of it
