"""The Docker image, proven without Docker: the files its Dockerfile COPYs
(as .dockerignore leaves them), installed as it installs them (`uv sync
--frozen --no-dev`), started with its ENTRYPOINT and CMD as a user that owns
none of them, with compose.yaml's environment and its secrets as files. It
answers /health and inserts a batch posted with the secret token."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import PROJECT, tcp_proxy

from cli.served import free_port

SYSTEM_PYTHON = Path("/usr/bin/python3")  # what python:3.11-slim has, reachable by anyone
NOBODY = 65534


def dockerfile() -> dict:
    """The instructions this test reproduces: COPY, ENV, ENTRYPOINT, CMD."""
    steps: dict = {"copy": [], "env": {}}
    text = (PROJECT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "COPY":
            *sources, target = shlex.split(rest)
            steps["copy"] += [(s, target) for s in sources]
        elif word == "ENV":
            steps["env"].update(dict(item.split("=", 1) for item in shlex.split(rest)))
        elif word in ("ENTRYPOINT", "CMD"):
            steps[word.lower()] = json.loads(rest)
    return steps


def lay_out(app: Path, copies: list[tuple[str, str]]) -> None:
    """What the COPY lines put into WORKDIR, leaving out what .dockerignore says."""
    ignored = [p.removeprefix("**/") for p in (PROJECT / ".dockerignore").read_text().split()]
    skip = shutil.ignore_patterns(*ignored)
    for source, target in copies:
        path = PROJECT / source.rstrip("/")
        if path.is_dir():
            shutil.copytree(path, app / target.rstrip("/"), ignore=skip)
        else:
            shutil.copy2(path, app / path.name if target.endswith("/") else app / target)


@pytest.fixture(scope="module")
def image() -> Iterator[dict]:
    if not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is needed: the image's Python, reachable by a plain user")
    # not under pytest's 0700 temporary directory: the plain user must reach it
    root = Path(tempfile.mkdtemp(prefix="dataarch-image-", dir="/var/tmp"))
    root.chmod(0o755)
    steps = dockerfile()
    app = root / "app"
    app.mkdir()
    lay_out(app, steps["copy"])
    venv = root / "venv"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    done = subprocess.run(
        [uv, "sync", "--frozen", "--no-dev", "--python", str(SYSTEM_PYTHON), "--quiet"],
        cwd=app, env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    yield {"root": root, "app": app, "venv": venv, "steps": steps}
    shutil.rmtree(root, ignore_errors=True)


def test_the_image_holds_no_bench_and_no_tests(image) -> None:
    app = image["app"]
    assert (app / "app.py").is_file() and (app / "api").is_dir() and (app / "dataarch").is_dir()
    assert not (app / "bench").exists() and not (app / "tests").exists()


@pytest.fixture
def database_over_tcp(new_database) -> Iterator[tuple[str, int]]:
    """A new database of this machine's server instead of the compose
    network's, reached over TCP as the image reaches `db` (the server's
    socket is closed to the plain user): (its name, a port on 127.0.0.1)."""
    dsn = dict(part.split("=", 1) for part in new_database().split())
    with tcp_proxy(f"{dsn['host']}/.s.PGSQL.{dsn['port']}") as port:
        yield dsn["dbname"], port


def test_the_image_starts_as_a_plain_user_and_ingests(image, database_over_tcp) -> None:
    root, venv, steps = image["root"], image["venv"], image["steps"]
    dbname, db_port = database_over_tcp
    secrets = root / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in ("db_password", "api_db_password", "api_token"):
        (secrets / name).write_text(f"secret-{name}\n")
    for writable in ("var", "backups", "reports"):
        (root / writable).mkdir(exist_ok=True)
        os.chmod(root / writable, 0o777)
    environment = yaml.safe_load((PROJECT / "compose.yaml").read_text())["services"]["api"][
        "environment"
    ]
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(root),
        **{k: v for k, v in steps["env"].items() if k != "PATH"},
        **environment,
        "PGHOST": "127.0.0.1", "PGPORT": str(db_port), "PGDATABASE": dbname,
        "PGUSER": "postgres",
        "DATAARCH_VAR_DIR": str(root / "var"),
        "DATAARCH_BACKUP_DIR": str(root / "backups"), "DATAARCH_REPORTS_DIR": str(root / "reports"),
    }  # fmt: skip
    for name, value in list(env.items()):
        if name.endswith("_FILE"):
            env[name] = str(secrets / Path(value).name)
    port = free_port()
    command = [*steps["entrypoint"], *steps["cmd"]]
    command[command.index("--port") + 1] = str(port)
    command[0] = str(venv / "bin" / command[0])

    def as_nobody() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    proc = subprocess.Popen(
        command, cwd=image["app"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=as_nobody if os.geteuid() == 0 else None, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the image never became healthy"
            time.sleep(0.5)
        token = (secrets / "api_token").read_text().strip()
        posted = httpx.post(f"{url}/tables/jobs/rows", json=[{"job_id": 9001, "job_name": "Image"}],
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert posted.status_code == 200 and posted.json()["inserted"] == 1, posted.text
        assert (root / "reports" / "index.html").is_file()  # `up` wrote the reports
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    output = proc.stdout.read()
    assert "Traceback" not in output
    bench = subprocess.run([str(venv / "bin" / "dataarch"), "bench"], cwd=image["app"], env=env,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bench.returncode == 2 and "no bench/ package" in bench.stderr
