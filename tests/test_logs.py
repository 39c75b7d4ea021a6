"""Structured logs: JSON lines with ids, counts and durations; no row
contents, no tokens."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
from conftest import JSON_AUTH, PROJECT, TOKEN, cli_env, employee, load_reference_rows, start_server


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_migration_logs_each_file(postgresql, dsn, tmp_path) -> None:
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "departments.csv").write_text("1,Secret Department Name\n2,\n")
    log_file = tmp_path / "cli.log"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "migrate", "--csv-dir", str(csv_dir)],
        env={**cli_env(dsn), "DATAARCH_LOG_FILE": str(log_file)},
        cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (entry,) = [e for e in read_log(log_file) if e["event"] == "migrate"]
    assert entry["table"] == "departments" and entry["source"] == "csv:departments.csv"
    assert (entry["submitted"], entry["inserted"], entry["rejected"]) == (2, 1, 1)
    assert entry["batch_id"] >= 1 and entry["duration_ms"] >= 0
    assert "Secret Department Name" not in log_file.read_text()
    assert done.stderr == ""  # stderr is for people: nothing went wrong, nothing to say


def test_api_logs_each_batch_without_rows_or_tokens(conn, dsn, tmp_path) -> None:
    load_reference_rows(conn)
    log_file = tmp_path / "api.log"
    proc, url = start_server(dsn, DATAARCH_LOG_FILE=str(log_file))
    try:
        rows = [employee(1, employee_name="Very Private Person"), employee(2, job_id=99)]
        body = httpx.post(f"{url}/tables/employees/rows", headers=JSON_AUTH, json=rows).json()
        httpx.post(f"{url}/tables/nope/rows", headers=JSON_AUTH, json=rows)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    (entry,) = [e for e in read_log(log_file) if e["event"] == "batch"]
    assert entry["batch_id"] == body["batch_id"] and entry["table"] == "employees"
    assert (entry["submitted"], entry["inserted"], entry["rejected"]) == (2, 1, 1)
    assert entry["duration_ms"] > 0 and entry["level"] == "info"
    text = log_file.read_text()
    assert "Very Private Person" not in text and TOKEN not in text


def test_json_on_stderr_only_when_asked_and_never_mixed_with_the_human_lines(dsn, tmp_path) -> None:
    """`2>&1 | tee log` shows what a terminal shows; a service asks for JSON."""
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "jobs.csv").write_text("1,Clerk\n")
    env = {**cli_env(dsn), "DATAARCH_VAR_DIR": str(tmp_path / "var")}
    piped = subprocess.run(
        f"{sys.executable} -m cli migrate --csv-dir {csv_dir} 2>&1 | cat",
        shell=True, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert piped.stdout.startswith("jobs.csv -> jobs: 1 lines") and "{" not in piped.stdout
    logged = read_log(tmp_path / "var" / "log" / "dataarch.log")
    assert any(e["event"] == "migrate" for e in logged)  # the log went to var/log
    (csv_dir / "jobs.csv").write_text("2,Driver\n")
    asked = subprocess.run(
        [sys.executable, "-m", "cli", "--log-format", "json", "migrate",
         "--csv-dir", str(csv_dir)],
        env=env, cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(asked.stderr.splitlines()[-1])["event"] == "migrate"
