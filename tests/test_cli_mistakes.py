"""Every ordinary mistake ends in a line or two that say what is wrong and a
documented exit status (1 failed, 2 usage, 3 not running): never a
traceback, never a hang."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PROJECT, cli_env, dataarch

DOWN_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _free_dir(tmp_path: Path) -> str:
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    return str(empty)


MISTAKES = [
    # (arguments, environment, exit status, what the message must say)
    (["ingest", "employees", "/nonexistent.csv"], {}, 2, "no such file"),
    (["upload", "employees", "/nonexistent.csv"], {}, 2, "no such file"),
    (["backup", "jobs", "--keep", "0"], {}, 2, "--keep"),
    (["backup", "jobs", "--keep", "-1"], {}, 2, "--keep"),
    (["backup", "nosuchtable"], {}, 2, "no table 'nosuchtable' is backed up"),
    (["restore"], {}, 2, "restore needs a TABLE or --all"),
    (["restore", "jobs", "--all"], {}, 2, "restore needs a TABLE or --all"),
    (["restore", "nosuchtable"], {}, 2, "unknown table 'nosuchtable': use one of"),
    (["restore", "ingest_errors"], {}, 2, "the ingest log is restored only with its whole"),
    (["migrate"], {"DATABASE_URL": "notaurl"}, 2, "DATABASE_URL is not a libpq connection string"),
    (["db", "init"], {"DATABASE_PASSWORD_FILE": "/nonexistent"}, 2, "DATABASE_PASSWORD_FILE"),
    (["serve", "--port", "99999"], {}, 2, "a port is a number from 1 to 65535"),
    (["migrate", "--csv-dir", "EMPTY"], {}, 2, "no CSV file to migrate"),
    (["migrate", "--csv-dir", "/nonexistent"], {}, 2, "is not a directory"),
    (["migrate", "--delimiter", '"'], {}, 2, "the delimiter must be one character"),
    (["migrate", "--encoding", "klingon"], {}, 2, "unknown encoding"),
    (["migrate", "--encoding", "utf-16"], {}, 2, "not ASCII-compatible"),
    (["migrate", "--encoding", "undefined"], {}, 2, "not ASCII-compatible"),
    (["migrate", "--sessions", "0"], {}, 2, "'0' is not a number of sessions (1 or more)"),
    (["migrate"], {"DATAARCH_MIGRATE_SESSIONS": "0"}, 2, "SESSIONS='0' must be more than 0"),
    (["migrate"], {"DATAARCH_MIGRATE_SESSIONS": "all"}, 2, "is not a number"),
    (["ingest", "jobs", "README.md", "--url", DOWN_URL, "--retry-for", "2"], {}, 3,
     "cannot reach the API at http://127.0.0.1:9"),
    (["get", "jobs", "1", "--url", DOWN_URL], {}, 3, "cannot reach the API at http://127.0.0.1:9"),
    (["get", "jobs", "1"], {"DATAARCH_URL": DOWN_URL}, 3, "at http://127.0.0.1:9 (ConnectError)"),
    (["report", "--year", "1800"], {}, 2, "no hires in 1800"),
    (["token", "create", "x"], {}, 2, "--scope"),
    (["batches", "revert", "x"], {}, 2, "not a batch number"),
    (["batches", "show"], {}, 2, "usage: dataarch batches"),
    (["lineage", "jobs", "x"], {}, 2, "invalid int value"),
    (["get", "jobs", "1", "--url", "not a url", "--retry-for", "1"], {}, 3, "cannot reach the API"),
    (["rejections", "close", "1"], {}, 2, "--note"),
    (["lineage", "nosuchtable", "1"], {}, 2, "unknown table 'nosuchtable': use one of"),
    (["batches", "--table", "nosuchtable"], {}, 2, "unknown table 'nosuchtable': use one of"),
    (["db", "status"], {"DATABASE_URL": "postgresql:///x?host=/nonexistent&connect_timeout=2"}, 3,
     "cannot reach the database"),
    (["nosuchcommand"], {}, 2, "invalid choice"),
    ([], {}, 2, "required"),
    (["report", "--year", "x"], {}, 2, "invalid int value"),
    (["backup", "verify", "/nonexistent.avro", "x"], {}, 2, "unrecognized arguments: x"),
]  # fmt: skip


# The client's mistakes that the server's data dictionary reveals (GET /dictionary),
# said before a byte of the file is sent.
MISTAKES_THE_API_SHOWS = [
    (["upload", "departments", "JOBS"], {}, 1, "is named for jobs, not departments"),
    (["ingest", "departments", "JOBS"], {}, 1, "is named for jobs, not departments"),
    (["upload", "nosuchtable", "JOBS"], {}, 2, "unknown table 'nosuchtable': use one of"),
    (["rejections", "nosuchtable"], {}, 2, "unknown table 'nosuchtable': use one of"),
    (["rejections", "export", "nosuchtable", "--out", "x"], {}, 2, "unknown table"),
    (["get", "nosuchtable", "1"], {}, 2, "unknown table"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "status", "says"), MISTAKES_THE_API_SHOWS, ids=lambda v: str(v)[:40]
)
def test_a_mistake_the_api_shows_is_one_clear_line(
    dsn, server, tmp_path, args, env, status, says
) -> None:
    test_a_mistake_is_one_clear_line(dsn, tmp_path, args, {"DATAARCH_URL": server, **env},
                                     status, says)  # fmt: skip


@pytest.mark.parametrize(("args", "env", "status", "says"), MISTAKES, ids=lambda v: str(v)[:40])
def test_a_mistake_is_one_clear_line(dsn, tmp_path, args, env, status, says) -> None:
    (tmp_path / "jobs.csv").write_text("1,Job\n")
    named = {"EMPTY": _free_dir(tmp_path), "JOBS": str(tmp_path / "jobs.csv")}
    args = [named.get(a, a) for a in args]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**cli_env(dsn), "DATAARCH_BACKUP_DIR": str(tmp_path / "b"), **env},
        cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - started < 30
    assert done.returncode == status, (done.returncode, done.stderr)
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) <= 2


def test_serve_fails_fast_on_a_port_in_use(dsn) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "cli", "serve", "--port", str(port)],
            env=cli_env(dsn), cwd=PROJECT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr


def test_an_unreachable_api_is_reported_at_once(dsn, tmp_path) -> None:
    """The first word comes within seconds, not after the retries."""
    (tmp_path / "jobs.csv").write_text("1,Job\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "ingest", "jobs", str(tmp_path / "jobs.csv"),
         "--url", DOWN_URL, "--retry-for", "6"],
        env=cli_env(dsn), cwd=PROJECT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    started = time.monotonic()
    first = proc.stderr.readline()
    assert (
        time.monotonic() - started < 3 and "cannot reach the API" in first and "retrying" in first
    )
    proc.wait(timeout=30)
    assert proc.returncode == 3


def test_the_embedded_server_is_never_started_behind_your_back(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env["DATAARCH_VAR_DIR"] = str(tmp_path / "var")
    done = subprocess.run(
        [sys.executable, "-m", "cli", "migrate"], env=env, cwd=PROJECT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3 and "not running: start it with `dataarch db start`" in done.stderr
    assert not (tmp_path / "var" / "pg").exists()


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("dataarch ")


def test_a_wrong_address_fails_at_once_naming_it(dsn) -> None:
    """No server there, none known to be starting: no retries."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "get", "jobs", "1", "--url", DOWN_URL],
        env=cli_env(dsn), cwd=PROJECT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert time.monotonic() - started < 15  # its retries would last 20 s; a busy machine, 3
    assert done.returncode == 3 and DOWN_URL in done.stderr and "retrying" not in done.stderr


def test_every_option_says_what_it_is_for() -> None:
    from cli.main import COMMANDS, build_parser

    for command in COMMANDS:
        parser = build_parser(command)
        chosen = next(a for a in parser._actions if a.dest == "command").choices[command]
        for action in [*parser._actions, *chosen._actions]:
            if action.option_strings and action.dest != "help":
                assert action.help, (command, action.option_strings)


def test_a_listing_into_a_closed_pipe_ends_quietly(conn, dsn) -> None:
    """`dataarch batches --json | head -c 1`: far more than a pipe holds, read by
    nobody: the command ends with status 0 and says nothing."""
    conn.execute(
        "select ingest_batch('jobs', jsonb_build_array(jsonb_build_object('job_id', n,"
        " 'job_name', 'x')), 'per_row', 'psql') from generate_series(1, 400) as n"
    )
    done = subprocess.run(
        f"{sys.executable} -m cli batches --limit 1000 --json | head -c 1;"
        " exit ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", env=cli_env(dsn), cwd=PROJECT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout == "{"


def test_a_database_behind_the_code_says_to_install_and_then_works(conn, dsn, tmp_path) -> None:
    """The code upgraded, the database not yet (as if installed before
    procedures/055 existed): the command says to run `dataarch db init`, in
    one line and with no traceback, and does what was asked once it has run."""
    conn.execute("drop function avro_bytes(bytea)")
    conn.execute("delete from installed_sql where file_name like '%055_avro_encoding.sql'")
    conn.commit()
    assert "code to apply: procedures/055_avro_encoding.sql" in dataarch(dsn, "db", "status").stdout
    backups = {"DATAARCH_BACKUP_DIR": str(tmp_path)}
    refused = dataarch(dsn, "backup", "jobs", **backups)
    assert refused.returncode == 1, refused.stderr
    assert "avro_bytes" in refused.stderr and "`dataarch db init`" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert dataarch(dsn, "db", "init").returncode == 0
    done = dataarch(dsn, "backup", "jobs", **backups)
    assert done.returncode == 0, done.stderr
