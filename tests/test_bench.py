"""`dataarch bench` works end to end (at a tiny N: speed is measured by the
command itself, never by a timed test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT

from bench import netns, pgloader
from bench.run import BOUNDS, CITUS_WORKERS, DISTRIBUTED, NODE_CPU, TARGETS, figure_of


def test_bench_runs_and_reports_every_figure(tmp_path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--rows", "2000", "--sample", "1000",
         "--json", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["rows"] == 2000
    expected = {"pgloader"} if pgloader.available() else set()
    expected |= {
        "copy_raw", "copy_fk", "naive_insert", "migrate", "revert", "ingest_sql", "ingest_http",
        "ingest_huge_numbers", "ingest_sql_spread", "copy_fk_batches", "copy_fk_batches_4",
        "http_overhead", "http_overhead_bare", "copy_to", "copy_from", "backup", "restore",
        "backup_peak_rss_mb", "restore_peak_rss_mb",
        "kpi1_ms_10k", "kpi1_ms_n", "kpi2_ms_10k", "kpi2_ms_n",
        "migrate_normal", "migrate_huge_field", "upload_normal", "upload_huge_field",
        "migrate_tiny_lines", "upload_tiny_lines", "migrate_deep_quoting",
        "upload_deep_quoting", "gzip_bomb_refused_s", "shapes_peak_rss_mb",
    }  # fmt: skip
    assert set(result["measurements"]) == expected
    for name, m in result["measurements"].items():
        assert figure_of(m) > 0, name
        if "seconds" in m:
            assert len(m["seconds"]) >= 3, name  # medians of at least three runs
    for name, target in result["targets"].items():
        assert set(target) == {"value", "target", "met"} | ({"bound"} if name in BOUNDS else set())
    # each ingest target beside its bound (COPY of the same batches' rows),
    # http_overhead beside a bare Litestar app's
    figures = {name: figure_of(m) for name, m in result["measurements"].items()}
    for name, (bound, label) in BOUNDS.items():
        _, bottom, _, _ = TARGETS[name]
        expected = figures[bound] / figures[bottom] if bottom else figures[bound]
        assert result["targets"][name]["bound"] == round(expected, 3)
        assert f"({label}: {result['targets'][name]['bound']})" in done.stdout
    assert "migrate / copy_fk" in done.stdout and "met" in done.stdout
    assert_pgloader_figure(result, done.stdout)
    # where the HTTP path's time goes, in CPU a request: the server's, and
    # the client's each way (httpx's against psycopg's direct call)
    cpu = result["measurements"]["http_overhead"]["cpu_ms"]
    assert set(cpu) == {"server", "client_http", "client_direct"}
    assert cpu["client_http"] > 0 and cpu["client_direct"] > 0
    assert cpu["server"] >= 0  # in 10 ms ticks where the kernel has no schedstat
    bare = result["measurements"]["http_overhead_bare"]
    assert set(bare["cpu_ms"]) == {"server", "client_http"}
    assert bare["sql_p50_ms"] == result["measurements"]["http_overhead"]["sql_p50_ms"]


def assert_pgloader_figure(result: dict, said: str) -> None:
    """CI installs pgloader (.ci/system-deps) and a healthy one gives its
    figure; one that died of its known start-up crash three times is
    reported as not measured, as is one that is not installed (elsewhere)."""
    why = result["not_measured"].get("pgloader", "")
    if why.startswith("pgloader crashed") and pgloader.KNOWN_CRASH in why:
        assert "pgloader" not in result["measurements"]
        assert "migrate / pgloader" not in result["targets"]
        assert "not measured: pgloader crashed" in said
    elif pgloader.available() or os.environ.get("CI") == "true":
        assert result["measurements"]["pgloader"]["rows_per_s"] > 0
        assert set(result["targets"]) == set(TARGETS) == set(result["ratios"])
    else:
        assert set(result["targets"]) == set(TARGETS) - {"migrate / pgloader"}
        assert "migrate / pgloader" in said and "not on the PATH" in said


def _fake_pgloader(folder: Path, crashes: int) -> Path:
    """A `pgloader` that dies of pgloader's known start-up crash `crashes`
    times, then succeeds; it counts its runs in a file beside it."""
    folder.mkdir()
    script = folder / "pgloader"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{folder}/runs" 2>/dev/null || echo 0); echo $((n + 1)) > "{folder}/runs"\n'
        f'if [ "$n" -lt {crashes} ]; then\n'
        f'  echo "FATAL: {pgloader.KNOWN_CRASH}. Invalid index 1 for (SIMPLE-ARRAY)" >&2\n'
        "  exit 1\nfi\n"
    )
    script.chmod(0o755)
    return folder


@pytest.mark.parametrize(("crashes", "loads"), [(0, True), (2, True), (3, False)])
def test_pgloader_crashing_at_start_is_retried_twice_then_reported(
    tmp_path, monkeypatch, crashes, loads
) -> None:
    fake = _fake_pgloader(tmp_path / "bin", crashes)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    said: list[str] = []
    run = lambda: pgloader.load_retrying(  # noqa: E731
        tmp_path / "x.csv", "host=/tmp dbname=x", tmp_path / "work", said.append
    )
    if loads:
        assert run() >= 0
    else:
        with pytest.raises(pgloader.PgloaderCrashed, match="monitor thread"):
            run()
    assert int((fake / "runs").read_text()) == min(crashes + 1, pgloader.ATTEMPTS)
    assert len(said) == min(crashes, pgloader.ATTEMPTS - 1)
    assert all("crashed as it started" in line for line in said)


def test_other_pgloader_failures_are_not_retried(tmp_path, monkeypatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "pgloader").write_text("#!/bin/sh\necho 'ERROR: no such table' >&2\nexit 2\n")
    (fake / "pgloader").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(pgloader.PgloaderFailed, match="no such table") as caught:
        pgloader.load_retrying(tmp_path / "x.csv", "host=/tmp", tmp_path / "w", print)
    assert not isinstance(caught.value, pgloader.PgloaderCrashed)


def test_a_target_without_its_peer_says_why() -> None:
    from bench.run import format_table

    result = {
        "rows": 10, "bad_ratio": 0.0, "measurements": {"migrate": {"rows_per_s": 5}},
        "targets": {}, "not_measured": {"pgloader": "pgloader crashed (FATAL: ...)"},
    }  # fmt: skip
    table = format_table(result)
    assert "migrate / pgloader" in table and "not measured: pgloader crashed (FATAL" in table


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
    # in the namespace model where it can be built (as root, as CI runs)
    model = [] if netns.available() else ["--netns-delay-ms", "0.5"]
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--rows", "2000", "--sample", "1000",
         "--citus", *model, "--json", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert_pgloader_figure(result, done.stdout)
    if model:
        assert result["citus_network"].startswith("network namespaces, 0.5 ms")
        assert "Citus nodes over network namespaces" in done.stdout
    citus = result["citus"]
    assert set(citus) >= set(DISTRIBUTED)
    for name in DISTRIBUTED:
        assert (citus[name].get("rows_per_s") or citus[name]["p50_ms"]) > 0, name
    assert "Citus/one" in done.stdout
    # the CPU each node spent on each path, at one worker and at two
    for workers in CITUS_WORKERS:
        measured = result[f"citus_{workers}_workers"]
        for path in NODE_CPU:
            nodes = measured[f"cpu_{path}"]["nodes"]
            assert set(nodes) == {"coordinator", *(f"worker {i}" for i in range(1, workers + 1))}
            if path != "kpis":  # every node holds rows, so every node works on them
                assert all(seconds > 0 for seconds in nodes.values()), (workers, path, nodes)
            assert measured[f"cpu_{path}"]["value"] > 0
    assert "CPU seconds a node spent" in done.stdout and "migrate, 2" in done.stdout


def test_the_namespace_model_needs_citus() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "--rows", "2000", "--netns-delay-ms", "0.5"],
        cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--netns-delay-ms: it needs --citus" in done.stderr and "Traceback" not in done.stderr


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
