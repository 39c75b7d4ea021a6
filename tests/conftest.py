"""Tests run against a real PostgreSQL: one throwaway cluster per session
(fsync off, unix socket only), the schema installed once into a template
database by pytest-postgresql, and a fresh clone of it for every test."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis
import psycopg
import pytest
from psycopg.types.json import Jsonb
from pytest_postgresql import factories

from cli import served
from dataarch.citus import INSTALL_HINT, CitusCluster, citus_installed, free_ports
from dataarch.installer import install, load_for_pytest, secure
from dataarch.pgserver import Cluster

# 0755 so that, when the suite runs as root, the postgres user can reach it.
# Every process imports this module (pytest-xdist's controller too), and only
# the one whose tests start the cluster destroys it: each removes its own.
_TEST_DIR = Path(tempfile.mkdtemp(prefix="dataarch-test-"))
_TEST_DIR.chmod(0o755)
atexit.register(shutil.rmtree, _TEST_DIR, ignore_errors=True)
TEST_CLUSTER = Cluster(_TEST_DIR / "pg", durable=False)
PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
SEED_DATA = SHARED / "seed-data"

_template = factories.postgresql_noproc(
    host=str(TEST_CLUSTER.socket_dir),
    port=TEST_CLUSTER.port,
    user="postgres",
    dbname="dataarch_test",
    options="-c TimeZone=UTC",
    load=[load_for_pytest],
)
_clone = factories.postgresql("postgresql_proc")


@pytest.fixture
def postgresql(_clone: psycopg.Connection) -> psycopg.Connection:
    """A fresh clone of the template, with the privileges `db init` sets on
    a database (a clone does not inherit its template's)."""
    secure(_clone)
    _clone.commit()
    return _clone


@pytest.fixture(scope="session")
def test_cluster() -> Iterator[Cluster]:
    TEST_CLUSTER.start()
    yield TEST_CLUSTER
    TEST_CLUSTER.destroy()
    shutil.rmtree(_TEST_DIR, ignore_errors=True)  # the commands' var/ dirs too


@pytest.fixture(scope="session")
def postgresql_proc(test_cluster: Cluster, request: pytest.FixtureRequest):  # noqa: ANN201
    """The cluster is up before pytest-postgresql builds the template."""
    return request.getfixturevalue("_template")


@pytest.fixture
def conn(postgresql: psycopg.Connection) -> psycopg.Connection:
    """The per-test database, in autocommit mode like psql."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def dsn(postgresql: psycopg.Connection) -> str:
    """Connection string of the per-test database, for extra connections."""
    info = postgresql.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"


def ingest(conn: psycopg.Connection, table: str, rows: object, mode: str = "per_row") -> dict:
    payload = {"table": table, "rows": rows, "mode": mode}
    return conn.execute("select ingest_batch(%s)", (Jsonb(payload),)).fetchone()[0]


def problems(conn: psycopg.Connection) -> list[tuple]:
    """What bookkeeping_problems() finds: every record that says "these rows
    are in the table" and is not true."""
    return conn.execute("select * from bookkeeping_problems()").fetchall()


def everything(conn: psycopg.Connection) -> dict[str, list]:
    """Every table a backup holds (the database says which), hire counts,
    the backup catalogue of sets, and every sequence's state: what an
    operation that changes nothing leaves as it was."""
    tables = conn.execute("select _backup_tables()").fetchone()[0]
    found = {
        t: conn.execute(f"select * from {t} order by 1").fetchall()
        for t in (*tables, "hire_counts", "backup_sets")
    }
    found["sequences"] = conn.execute(
        "select sequencename, last_value from pg_sequences order by 1"
    ).fetchall()
    return found


def write(folder: Path, name: str, text: str) -> Path:
    """A file of `text` in `folder`, made if need be."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def load_reference_rows(conn: psycopg.Connection, departments: int = 3, jobs: int = 3) -> None:
    """A few departments and jobs so employees have something to point at."""
    ingest(
        conn,
        "departments",
        [{"department_id": i, "department_name": f"Dept {i}"} for i in range(1, departments + 1)],
    )
    ingest(conn, "jobs", [{"job_id": i, "job_name": f"Job {i}"} for i in range(1, jobs + 1)])


def employee(employee_id: int = 1, **overrides: object) -> dict:
    row = {
        "employee_id": employee_id,
        "employee_name": "Marcelo Gonzalez",
        "hiring_date": "2021-07-27T16:02:08Z",
        "department_id": 1,
        "job_id": 2,
    }
    row.update(overrides)
    return row


IN_CI = os.environ.get("CI") == "true"

# Property tests: under CI=true Hypothesis derives each test's inputs from
# the test itself (derandomize), so CI answers the same for the same code;
# on a developer's machine it explores with random seeds, and every failure
# it finds becomes an @example beside the test, in the commit that fixes it.
hypothesis.settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis.settings.register_profile("explore", print_blob=True)
hypothesis.settings.load_profile("ci" if IN_CI else "explore")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60) -> object:
    """Poll `condition` until it returns something true, and return that;
    fail saying `what` was awaited when `timeout` seconds pass first. Tests
    wait for what they can observe (a lock, a row, a file), never a guessed
    number of seconds."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.01)
    return found


def advisory_lock_held(conn: psycopg.Connection, key_sql: str) -> bool:
    """True while some session holds the advisory lock whose bigint key the
    SQL expression key_sql computes (e.g. "backup_lock_key('employees')")."""
    return conn.execute(
        "select exists (select from pg_locks as l where l.locktype = 'advisory' and l.granted"
        f" and ((l.classid::bigint << 32) | l.objid::bigint) = ({key_sql}))"
    ).fetchone()[0]


def requires_seed_data() -> pytest.MarkDecorator:
    """Skip when ../shared/seed-data is absent, except under CI=true, where the
    test then runs and fails: CI always has it."""
    return pytest.mark.skipif(
        not SEED_DATA.is_dir() and not IN_CI,
        reason=f"{SEED_DATA} is absent: the real challenge data is only beside the repository",
    )


def release_tree(commit: str, target: Path) -> Path:
    """The project as it was at `commit`, read from git history into target;
    skipped without that history, except under CI=true, where it fails."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT), "archive", "--format=tar", commit], capture_output=True
    )
    if archive.returncode != 0:
        reason = f"git history with {commit} is needed: {archive.stderr.decode()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture
def new_database(test_cluster: Cluster) -> Iterator[Callable[[], str]]:
    """Makes empty databases (no schema) on the test cluster; returns their dsn."""
    made: list[str] = []

    def make() -> str:
        name = f"empty_{os.getpid()}_{len(made)}_{secrets.token_hex(3)}"
        with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
            admin.execute(f'create database "{name}"')
        made.append(name)
        return test_cluster.conninfo(name)

    yield make
    with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
        for name in made:
            admin.execute(f'drop database if exists "{name}" with (force)')


@contextlib.contextmanager
def tcp_proxy(target: str | tuple[str, int]) -> Iterator[int]:
    """A TCP port on 127.0.0.1 whose connections are relayed to `target` (a
    unix socket's path, or a (host, port)), byte for byte, by threads of
    this process: what a server on a network looks like to a client that
    may not reach the socket itself. Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            family = socket.AF_UNIX if isinstance(target, str) else socket.AF_INET
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(target)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


TOKEN = "test-token"


def api_settings(dsn: str, **overrides: object):  # noqa: ANN201
    """Settings for an app served from the per-test database, as the API role."""
    import dataclasses

    from dataarch.settings import ApiToken, Settings

    settings = dataclasses.replace(
        Settings.from_env({}),
        database_url=dsn,
        api_database_url=dsn.replace("user=postgres", "user=dataarch_api"),
        tokens=(ApiToken(TOKEN, "admin"),),
    )
    return dataclasses.replace(settings, **overrides)


AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "Content-Type": "application/json"}


def cli_env(dsn: str) -> dict[str, str]:
    """The environment of a `dataarch` command run by a test: the per-test
    database, the test token, and a var/ of the test session's own (the
    project's var/ is a developer's, never the tests')."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        DATABASE_URL=dsn,
        DATAARCH_API_DATABASE_URL=dsn.replace("user=postgres", "user=dataarch_api"),
        DATAARCH_API_TOKEN=TOKEN,
        DATAARCH_VAR_DIR=str(_TEST_DIR / f"var-{os.getpid()}"),
    )
    return env


def dataarch(
    dsn: str, *args: str, timeout: float = 120, cwd: Path = PROJECT, **env: str
) -> subprocess.CompletedProcess[str]:
    """The `dataarch` command as a user runs it, against the per-test
    database, from the project (or from cwd, a copy of it)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**cli_env(dsn), **env}, cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def start_server(dsn: str, **env: str) -> tuple[subprocess.Popen, str]:
    """`dataarch serve` against dsn; a 503 from /health counts as started,
    since some tests start it while the database is down."""
    return served.start_server({**cli_env(dsn), **env}, ready=(200, 503), cwd=PROJECT)


@contextlib.contextmanager
def served_clone(proc, dbname: str, backup_dir: Path, **env: str) -> Iterator[str]:  # noqa: ANN001
    """`dataarch serve` over a clone of the template named dbname, with a
    few departments and jobs, for a whole module; yields its URL."""
    from pytest_postgresql.janitor import DatabaseJanitor

    janitor = DatabaseJanitor(
        user=proc.user, host=proc.host, port=proc.port, dbname=dbname,
        template_dbname=proc.template_dbname,
    )  # fmt: skip
    janitor.init()
    dsn = f"host={proc.host} port={proc.port} dbname={dbname} user=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        secure(conn)
        load_reference_rows(conn)
    server, url = start_server(dsn, DATAARCH_BACKUP_DIR=str(backup_dir), **env)
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        janitor.drop()


@pytest.fixture
def server(conn: psycopg.Connection, dsn: str) -> Iterator[str]:
    """`dataarch serve` over the per-test database; yields its URL."""
    proc, url = start_server(dsn)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


# -- the Citus tier (tests/citus/) ------------------------------------------------------
# Its modules import tests of the PostgreSQL tier, so pytest collects them
# again, and set `postgresql = citus_postgresql`: there the same tests get a
# database on a local coordinator with two workers instead of a clone of the
# template. Without Citus they skip and say how to install it, except under
# CI=true, where that is a failure.


@pytest.fixture(scope="session")
def citus_available() -> None:
    """Skips a test without Citus installed, saying how to install it;
    under CI=true, fails it instead."""
    if not citus_installed():
        if IN_CI:
            pytest.fail(f"CI runs the Citus tier: {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="session")
def citus_cluster(citus_available: None, test_cluster: Cluster) -> Iterator[CitusCluster]:
    """A local three-node Citus cluster. It lives in test_cluster's
    directory, so it goes first (test_cluster's teardown removes that
    directory)."""
    # each pytest-xdist worker probes its own range: two probing one range
    # at once would both find the same ports free
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    cluster = CitusCluster(_TEST_DIR / "citus", base_port=free_ports(3, start=9710 + 30 * worker))
    cluster.start()
    yield cluster
    cluster.destroy()
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def citus_url(citus_cluster: CitusCluster) -> str:
    """A database on the local Citus cluster, schema installed."""
    url = citus_cluster.create_database("dataarch_citus")
    with psycopg.connect(url) as conn:
        install(conn)
    return url


@pytest.fixture
def citus_postgresql(citus_url: str) -> Iterator[psycopg.Connection]:
    """pytest-postgresql's `postgresql`, on Citus: a connection (not in
    autocommit) to the Citus database, every table emptied first, since a
    distributed database cannot be cloned from a template."""
    with psycopg.connect(citus_url, autocommit=True) as admin:
        # what a test may write: the tables a backup holds, and the catalogue
        tables = admin.execute("select _backup_tables()").fetchone()[0]
        admin.execute(f"truncate {', '.join(tables)}, backup_catalog restart identity cascade")
    conn = psycopg.connect(citus_url, options="-c TimeZone=UTC")
    yield conn
    conn.close()
