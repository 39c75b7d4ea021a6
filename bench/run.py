"""The measurements of `dataarch bench`, in one run, and the targets they are held to."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench import netns, pgloader, shapes
from bench.measure import (
    Rate,
    cpu_seconds,
    p50_ms,
    peak_rss_mb,
    repeat,
    reset_peak_rss,
    run_child,
    run_refused,
    share_out,
    threads_cpu_seconds,
)
from cli.served import SERVE, start_server
from dataarch.citus import CitusCluster, free_ports
from dataarch.client import batches
from dataarch.csvrecords import Reader
from dataarch.dictionary import read as read_dictionary
from dataarch.generate import generate
from dataarch.installer import install
from dataarch.pgserver import Cluster

# ratio name -> (numerator, denominator, comparison, target)
TARGETS: dict[str, tuple[str, str | None, str, float]] = {
    "migrate / pgloader": ("migrate", "pgloader", ">=", 2.0),
    "migrate / copy_fk": ("migrate", "copy_fk", ">=", 1.5),
    "migrate / copy_raw": ("migrate", "copy_raw", ">=", 0.4),
    "migrate / naive_insert": ("migrate", "naive_insert", ">=", 4),
    # a wrong load is undone no slower than it was loaded
    "revert / migrate": ("revert", "migrate", ">=", 1.0),
    "ingest_sql / copy_fk": ("ingest_sql", "copy_fk", ">=", 0.8),
    # against the limit, not against ingest_sql (a ratio that grew as ingest_sql fell)
    "ingest_http / copy_fk": ("ingest_http", "copy_fk", ">=", 1.5),
    # a body of huge exponents costs no more than a normal one (issue 29)
    "ingest_huge_numbers / ingest_sql": ("ingest_huge_numbers", "ingest_sql", ">=", 0.8),
    # the slowest repetition over the fastest: a plan that goes bad after the
    # tables are emptied shows here (issue 29)
    "ingest_sql_spread": ("ingest_sql_spread", None, "<=", 1.3),
    "http_overhead": ("http_overhead", None, "<=", 1.05),
    "backup / copy_to": ("backup", "copy_to", ">=", 0.25),
    "restore / copy_from": ("restore", "copy_from", ">=", 0.4),
    "kpi1_ms(N) / kpi1_ms(10k)": ("kpi1_ms_n", "kpi1_ms_10k", "<=", 1.2),
    "kpi2_ms(N) / kpi2_ms(10k)": ("kpi2_ms_n", "kpi2_ms_10k", "<=", 1.2),
    "backup_peak_rss_mb": ("backup_peak_rss_mb", None, "<=", 100),
    # input shapes (issue 29): a huge field costs no more a byte than normal
    # lines, and no shape takes the CLI or the server past the documented bound
    "migrate_huge_field / migrate_normal": ("migrate_huge_field", "migrate_normal", ">=", 1.0),
    "upload_huge_field / upload_normal": ("upload_huge_field", "upload_normal", ">=", 1.0),
    # guards against time that grows faster than the input: a quoted field
    # over many lines is parsed in Python, not split by the database (0.39-
    # 0.50 of normal's MB/s in the first two runs; ~0.001 before it was made
    # linear); a tiny line that is a rejection costs a logged row (0.77-0.88
    # of normal's lines/s; 0.47-0.60 before 7f29ae3 logged them faster)
    "migrate_deep_quoting / migrate_normal": ("migrate_deep_quoting", "migrate_normal", ">=", 0.25),
    "upload_deep_quoting / upload_normal": ("upload_deep_quoting", "upload_normal", ">=", 0.25),
    "migrate_tiny_lines / migrate_normal, lines/s": (
        "migrate_tiny_lines.lines_per_s",
        "migrate_normal.lines_per_s",
        ">=",
        0.4,
    ),
    "upload_tiny_lines / upload_normal, lines/s": (
        "upload_tiny_lines.lines_per_s",
        "upload_normal.lines_per_s",
        ">=",
        0.4,
    ),
    "shapes_peak_rss_mb": ("shapes_peak_rss_mb", None, "<=", 300),
    "restore_peak_rss_mb": ("restore_peak_rss_mb", None, "<=", 200),
}
# What the ingest targets are up against: the rows of the same 1000-row
# batches COPYed into employees (its foreign keys and hire counts; no rule
# checked, nothing logged, no HTTP), by one session and by four, into the
# emptied table. A goal above its bound's ratio to copy_fk asks ingest to
# judge, log and answer a batch in less than no time.
# http_overhead's: the same POSTs to a bare Litestar app on the same stack.
BOUNDS = {
    "ingest_sql / copy_fk": ("copy_fk_batches", "COPY of the same batches"),
    "ingest_http / copy_fk": ("copy_fk_batches_4", "COPY of the same batches"),
    "http_overhead": ("http_overhead_bare", "a bare Litestar app"),
}
INGEST_SQL = "select ingest_batch_json('employees', %s)"
INGEST_PATH = "/tables/employees/rows"
BARE_API = ("-m", "uvicorn", "bench.bare_api:app", "--log-level", "warning", "--http", "httptools")
# What --citus puts beside the single server's figures.
DISTRIBUTED = ("migrate", "ingest_sql", "ingest_http", "kpi1_ms_n", "kpi2_ms_n")
CITUS_WORKERS = (1, 2)  # cluster sizes --citus measures, each on a fresh cluster
NODE_CPU = ("migrate", "ingest_sql", "ingest_http", "kpis")  # paths timed per node
HUGE_FIELD_BYTES = 256 << 20  # the name field of the huge-field shape
GZIP_BOMB_BYTES = 300 << 20  # what the gzip bomb expands to
KPI1, KPI2 = "/kpis/hires-by-quarter?year=2021", "/kpis/departments-above-mean?year=2021"
# Untimed requests before a KPI's p50: the API's pool hands sequential
# requests to each of its connections in turn (up to 10), and a connection's
# first call of a KPI compiles and plans it. The 1M side ran first on a
# fresh server and paid that; the 10k side, on the same server, did not.
KPI_WARMUP = 10
HTTP_WARMUP = 3  # untimed POSTs each way before http_overhead's
PROJECT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "cli"]


class BenchFailure(RuntimeError):
    """A request failed while measuring; the server's log says why."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


class Bench:
    def __init__(
        self, rows: int, bad_ratio: float, sample: int, reps: int, citus: bool = False,
        netns_delay_ms: float | None = None,
    ) -> None:  # fmt: skip
        self.rows, self.bad_ratio, self.sample, self.reps = rows, bad_ratio, sample, reps
        self.work = Path(tempfile.mkdtemp(prefix="dataarch-bench-"))
        self.work.chmod(0o755)  # the postgres user must reach the cluster when we are root
        self.with_citus = citus
        self.netns_delay_ms = netns_delay_ms  # None: the nodes share this host's loopback
        self.citus: CitusCluster | None = None  # the cluster being measured
        self.cluster: Cluster | None = None
        self.measurements: dict[str, dict] = {}
        self.not_measured: dict[str, str] = {}  # measurement -> why not (a missing peer)
        self.token = secrets.token_urlsafe(16)
        self.server_log = self.work / "server.log"

    # -- setup -----------------------------------------------------------------------

    def database(self) -> str:
        if url := os.environ.get("DATABASE_URL"):
            return url
        self.cluster = Cluster(self.work / "pg", durable=False)
        self.cluster.start()
        self.cluster.ensure_database("bench")
        return self.cluster.conninfo("bench")

    def env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("PG")},
            "DATABASE_URL": self.dsn,
            "DATAARCH_API_TOKEN": self.token,
            "DATAARCH_BACKUP_DIR": str(self.work / "backups"),
            "DATAARCH_VAR_DIR": str(self.work / "var"),
        }

    def record(self, name: str, value: Rate | dict) -> None:
        self.measurements[name] = value.as_dict() if isinstance(value, Rate) else value
        shown = self.measurements[name]
        print(f"  {name:22s} {figure_of(shown)}", file=sys.stderr, flush=True)

    # -- the measurements --------------------------------------------------------------

    def run(self, keep_server_log: Path | None = None) -> dict:
        """All the measurements (and with citus, the distributed ones beside
        them); the server's log is copied to keep_server_log when a request
        failed (the work directory goes either way)."""
        csv_dir = self.work / "csv"
        try:
            generate(csv_dir, employees=self.rows, bad_ratio=self.bad_ratio)
            self.dsn = self.database()
            self.measure_one_server(csv_dir)
            result = self.report()
            if self.with_citus:
                single, self.measurements = self.measurements, {}
                for workers in CITUS_WORKERS:  # the last one's figures go beside one server's
                    self.measurements = {}
                    self.measure_on_citus(csv_dir, workers)
                    result[f"citus_{workers}_workers"] = self.measurements
                result["citus"] = self.measurements
                result["citus_network"] = self.citus_network
                self.measurements = single
            return result
        except BenchFailure:
            if keep_server_log and self.server_log.exists():
                shutil.copy(self.server_log, keep_server_log)
            raise
        finally:
            if self.cluster:
                self.cluster.destroy()
            if self.citus:
                self.citus.destroy()
            shutil.rmtree(self.work, ignore_errors=True)

    def measure_one_server(self, csv_dir: Path) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            install(conn)
            self.measure_migrate(conn, csv_dir)
            self.measure_revert(conn, csv_dir)
            self.measure_pgloader()
            valid_file = self.measure_copies(conn)
            self.measure_backup_restore(conn)
            with self.server() as url:
                self.measure_kpis(conn, url, valid_file)
                self.measure_naive_insert(conn, valid_file)
                self.measure_ingest(conn, csv_dir / "hired_employees.csv", url)
                self.measure_shapes(conn, csv_dir / "hired_employees.csv", url)

    def measure_on_citus(self, csv_dir: Path, workers: int) -> None:
        """The distributed figures on a fresh local cluster of `workers`
        workers: on the loopback, or in the namespace model (bench/netns.py)."""
        print(f"on a local Citus cluster (a coordinator, {workers} workers;"
              f" {self.citus_network}):", file=sys.stderr)  # fmt: skip
        base_port = free_ports(workers + 1, start=9800)
        with ExitStack() as stack:
            placements = None
            if self.netns_delay_ms is not None:
                placements = stack.enter_context(
                    netns.namespace_model(workers + 1, base_port, self.netns_delay_ms)
                )
            self.citus = CitusCluster(self.work / f"citus{workers}", base_port, workers, placements)
            try:
                self.citus.start()
                self.dsn = self.citus.create_database("bench")
                self.measure_distributed(csv_dir)
            finally:
                self.citus.destroy()
                self.citus = None

    @property
    def citus_network(self) -> str:
        """How the Citus nodes reach each other in this run."""
        if self.netns_delay_ms is None:
            return "the loopback"
        return f"network namespaces, {self.netns_delay_ms} ms each way to a worker"

    def measure_distributed(self, csv_dir: Path) -> None:
        """What `--citus` compares: migrate, the two ingest paths, both KPIs;
        and the CPU time each node spent on each (what a node of its own
        would need: the figures this machine's shared cores cannot show)."""
        csv_file = csv_dir / "hired_employees.csv"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            install(conn)
            with self.node_cpu("migrate", self.rows * self.reps):
                self.measure_migrate(conn, csv_dir)
            with self.server() as url:
                with self.node_cpu("kpis", 2 * (KPI_WARMUP + self.kpi_requests), per="KPI request"):
                    self.measure_kpis_at_n(conn, url)
                bodies, rows = self.ingest_bodies(conn, csv_file)
                with self.node_cpu("ingest_sql", rows * self.reps):
                    self.measure_ingest_sql(conn, bodies, rows)
                with self.node_cpu("ingest_http", rows * self.reps):
                    self.measure_ingest_http(conn, url, bodies, rows)

    @contextmanager
    def node_cpu(self, path: str, units: int, per: str = "1000 rows") -> Iterator[None]:
        """Records `cpu_<path>`: the CPU seconds each node of the cluster
        spent meanwhile, per `per` (1000 rows, or one request), and the
        rate a cluster of one core a node could reach: the busiest node's."""
        nodes = {"coordinator": self.citus.coordinator} | {
            f"worker {i}": node for i, node in enumerate(self.citus.nodes[1:], 1)
        }
        before = {name: cpu_seconds(node.postmaster_pid()) for name, node in nodes.items()}
        yield
        size, counted = (1000, "rows") if per == "1000 rows" else (1, "requests")
        spent = {
            name: round((cpu_seconds(node.postmaster_pid()) - before[name]) * size / units, 4)
            for name, node in nodes.items()
        }
        busiest = max(spent.values())
        self.record(f"cpu_{path}", {
            "per": per, "nodes": spent,
            "value": round(size / busiest, 1) if busiest else 0,
            "value_is": f"{counted}/s with one core a node",
        })  # fmt: skip

    def reset(self, conn: psycopg.Connection, *, reference: bool) -> None:
        tables = "employees, ingest_errors, idempotency_keys, migrated_files, ingest_batches"
        conn.execute(f"truncate {tables}" + (", departments, jobs" if reference else ""))

    def measure_migrate(self, conn: psycopg.Connection, csv_dir: Path) -> None:
        argv = [*CLI, "migrate", "--csv-dir", str(csv_dir)]
        rate = repeat(
            self.rows, self.reps,
            lambda: self.reset(conn, reference=True),
            lambda: run_child(argv, self.env()),
        )  # fmt: skip
        self.record("migrate", rate)

    def measure_revert(self, conn: psycopg.Connection, csv_dir: Path) -> None:
        """`dataarch batches revert` of the employees file's batch, against
        the same lines migrated: both rates count the file's lines, so the
        ratio is migrate's seconds over revert's. Leaves the file migrated."""
        migrate = [*CLI, "migrate", "--csv-dir", str(csv_dir)]
        batch: list[int] = []

        def load() -> None:
            self.reset(conn, reference=True)
            run_child(migrate, self.env())
            batch[:] = conn.execute(
                "select max(batch_id) from ingest_batches where table_name = 'employees'"
            ).fetchone()

        def revert() -> None:
            run_child([*CLI, "batches", "revert", str(batch[0])], self.env())

        self.record("revert", repeat(self.rows, self.reps, load, revert))
        load()

    def measure_pgloader(self) -> None:
        """pgloader loading the clean twin of the employees file (same generator,
        no bad line) into a fresh database of the same schema."""
        if not pgloader.available():
            self.skip("pgloader", "pgloader is not on the PATH")
            return
        clean = self.work / "clean"
        generate(clean, employees=self.rows, bad_ratio=0)
        with (
            self.sibling_database("bench_pgloader") as dsn,
            psycopg.connect(dsn, autocommit=True) as conn,
        ):
            install(conn)
            for table in ("departments", "jobs"):
                columns = conn.execute("select _table_columns(%s)", (table,)).fetchone()[0]
                into = sql.SQL("copy {} ({}) from stdin (format csv)").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                with (clean / f"{table}.csv").open("rb") as f, conn.cursor().copy(into) as copy:
                    copy.write(f.read())
            say = lambda text: print(f"  {text}", file=sys.stderr, flush=True)  # noqa: E731
            seconds = []
            for _ in range(self.reps):
                conn.execute("truncate employees")
                try:
                    seconds.append(pgloader.load_retrying(
                        clean / "hired_employees.csv", dsn, self.work / "pgloader", say
                    ))  # fmt: skip
                except pgloader.PgloaderCrashed as crash:
                    self.skip("pgloader", f"pgloader crashed ({crash})")
                    return
            if (loaded := self.count(conn)) != self.rows:
                raise pgloader.PgloaderFailed(f"pgloader kept {loaded} of {self.rows} lines")
        self.record("pgloader", Rate(self.rows, seconds))

    def skip(self, name: str, why: str) -> None:
        """A measurement a peer could not give: reported as not measured, and why."""
        self.not_measured[name] = why
        print(f"  {name:22s} not measured: {why}", file=sys.stderr, flush=True)

    @contextmanager
    def sibling_database(self, name: str) -> Iterator[str]:
        """A new, empty database beside the bench's own, on the same server;
        on a server of DATABASE_URL it is dropped again afterwards."""
        if self.cluster:
            self.cluster.ensure_database(name)
            yield self.cluster.conninfo(name)
            return
        drop = sql.SQL("drop database if exists {}").format(sql.Identifier(name))
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(drop)
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(self.dsn, dbname=name)
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(drop)

    def measure_copies(self, conn: psycopg.Connection) -> Path:
        """The physical limits: COPY out, COPY into a bare keyed table, COPY into employees."""
        valid = conn.execute("select count(*) from employees").fetchone()[0]
        path = self.work / "valid.copy"

        def copy_out() -> None:
            with path.open("wb") as f, conn.cursor().copy("copy employees to stdout") as copy:
                for chunk in copy:
                    f.write(chunk)

        self.record("copy_to", repeat(valid, self.reps, lambda: None, copy_out))
        conn.execute("drop table if exists bench_raw")
        # primary key and CHECK constraints, no foreign keys, no triggers
        conn.execute("create table bench_raw (like employees including constraints"
                     " including indexes)")  # fmt: skip

        def copy_in(table: str) -> None:
            with path.open("rb") as f, conn.cursor().copy(f"copy {table} from stdin") as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)

        truncate_raw = lambda: conn.execute("truncate bench_raw")  # noqa: E731
        self.record(
            "copy_raw", repeat(valid, self.reps, truncate_raw, lambda: copy_in("bench_raw"))
        )
        self.record(
            "copy_from", repeat(valid, self.reps, truncate_raw, lambda: copy_in("bench_raw"))
        )
        truncate = lambda: conn.execute("truncate employees")  # noqa: E731
        self.record("copy_fk", repeat(valid, self.reps, truncate, lambda: copy_in("employees")))
        conn.execute("drop table bench_raw")
        return path

    def measure_backup_restore(self, conn: psycopg.Connection) -> None:
        valid = conn.execute("select count(*) from employees").fetchone()[0]
        for name, argv in [
            ("backup", [*CLI, "backup", "employees", "--keep", "1"]),
            ("restore", [*CLI, "restore", "employees"]),
        ]:
            runs = [run_child(argv, self.env()) for _ in range(self.reps)]
            self.record(name, Rate(valid, [s for s, _ in runs]))
            self.record(f"{name}_peak_rss_mb", {"value": round(max(m for _, m in runs), 1)})

    @property
    def kpi_requests(self) -> int:
        """Requests a KPI's p50 is taken over."""
        return max(self.reps, 15)

    def p50(self, url: str, path: str) -> float:
        """The p50 of kpi_requests requests, after KPI_WARMUP untimed ones."""
        samples = []
        with httpx.Client(base_url=url, headers=self.auth, timeout=60) as http:
            for _ in range(KPI_WARMUP):
                self.check(http.get(path))
            for _ in range(self.kpi_requests):
                start = time.perf_counter()
                self.check(http.get(path))
                samples.append(time.perf_counter() - start)
        return p50_ms(samples)

    def measure_kpis_at_n(self, conn: psycopg.Connection, url: str) -> None:
        self.record("kpi1_ms_n", {"p50_ms": self.p50(url, KPI1), "employees": self.count(conn)})
        self.record("kpi2_ms_n", {"p50_ms": self.p50(url, KPI2), "employees": self.count(conn)})

    def measure_kpis(self, conn: psycopg.Connection, url: str, valid_file: Path) -> None:
        self.measure_kpis_at_n(conn, url)
        conn.execute("truncate employees")
        with valid_file.open("rb") as f, conn.cursor().copy("copy employees from stdin") as copy:
            copy.write(b"".join(f.readline() for _ in range(10_000)))
        self.record("kpi1_ms_10k", {"p50_ms": self.p50(url, KPI1), "employees": self.count(conn)})
        self.record("kpi2_ms_10k", {"p50_ms": self.p50(url, KPI2), "employees": self.count(conn)})

    def measure_naive_insert(self, conn: psycopg.Connection, valid_file: Path) -> None:
        """The seed's way: one INSERT per row from Python (executemany)."""
        with valid_file.open() as f:
            lines = zip(range(self.sample), f, strict=False)
            rows = [line.rstrip("\n").split("\t")[:5] for _, line in lines]  # no lineage

        def insert() -> None:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into employees (employee_id, employee_name, hiring_date,"
                    " department_id, job_id) values (%s, %s, %s, %s, %s)", rows,
                )  # fmt: skip

        truncate = lambda: conn.execute("truncate employees")  # noqa: E731
        self.record("naive_insert", repeat(len(rows), self.reps, truncate, insert))

    def ingest_bodies(self, conn: psycopg.Connection, csv_file: Path) -> tuple[list[str], int]:
        """The sample's rows as 1000-row JSON bodies, and how many rows they hold."""
        columns = read_dictionary(conn)["employees"].columns
        sample = zip(range(self.sample), _row_objects(csv_file, columns), strict=False)
        bodies = [json.dumps(batch) for batch in batches(row for _, row in sample)]
        return bodies, sum(len(json.loads(b)) for b in bodies)

    def measure_ingest(self, conn: psycopg.Connection, csv_file: Path, url: str) -> None:
        bodies, rows = self.ingest_bodies(conn, csv_file)
        self.measure_ingest_sql(conn, bodies, rows)
        self.measure_copy_batches(conn)
        self.measure_huge_numbers(conn, bodies[0])
        self.measure_ingest_http(conn, url, bodies, rows)
        self.measure_http_overhead(conn, url, bodies)

    def measure_ingest_sql(self, conn: psycopg.Connection, bodies: list[str], rows: int) -> None:
        def direct() -> None:
            for body in bodies:
                conn.execute(INGEST_SQL, (body,))

        truncate = lambda: self.reset(conn, reference=False)  # noqa: E731
        sql = repeat(rows, self.reps, truncate, direct)
        self.record("ingest_sql", sql)
        self.record("ingest_sql_spread", {"value": round(max(sql.seconds) / min(sql.seconds), 3)})

    def measure_ingest_http(
        self, conn: psycopg.Connection, url: str, bodies: list[str], rows: int, clients: int = 4
    ) -> None:
        def over_http() -> None:
            share_out(
                bodies, clients,
                lambda: httpx.Client(base_url=url, headers=self.json_auth, timeout=120),
                lambda http, body: self.check(http.post(INGEST_PATH, content=body)),
            )  # fmt: skip

        truncate = lambda: self.reset(conn, reference=False)  # noqa: E731
        self.record("ingest_http", repeat(rows, self.reps, truncate, over_http))

    def measure_copy_batches(self, conn: psycopg.Connection, clients: int = 4) -> None:
        """The bounds of the ingest targets (BOUNDS): the valid rows the last
        ingest_sql repetition left, in 1000-row batches, COPYed into the
        emptied employees by one session, then by `clients` at once."""
        with conn.cursor().copy("copy employees to stdout") as copy:
            lines = b"".join(copy).splitlines(keepends=True)
        chunks = [b"".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]

        def copy_in(c: psycopg.Connection, chunk: bytes) -> None:
            with c.cursor().copy("copy employees from stdin") as copy:
                copy.write(chunk)

        def one_session() -> None:
            for chunk in chunks:
                copy_in(conn, chunk)

        def sessions() -> None:
            share_out(chunks, clients, lambda: psycopg.connect(self.dsn, autocommit=True), copy_in)

        truncate = lambda: conn.execute("truncate employees")  # noqa: E731
        self.record("copy_fk_batches", repeat(len(lines), self.reps, truncate, one_session))
        self.record(f"copy_fk_batches_{clients}", repeat(len(lines), self.reps, truncate, sessions))

    def measure_shapes(self, conn: psycopg.Connection, csv_file: Path, url: str) -> None:
        """Input shapes of issue 29 beside the normal file, each migrated and
        uploaded: the sample's lines with one huge field among them, a tenth
        of them with ten tiny lines after each, and records whose quoted
        field runs over 20 000 lines; and a gzip bomb (refused). MB/s and
        lines/s, and the peak memory of the CLI and the server."""
        folder = self.work / "shapes"
        normal = shapes.first_lines(csv_file, folder / "normal" / csv_file.name, self.sample)
        huge = shapes.with_huge_field(normal, folder / "huge" / csv_file.name, HUGE_FIELD_BYTES)
        tiny = shapes.with_tiny_lines(normal, folder / "tiny" / csv_file.name, self.sample // 10)
        deep = shapes.deep_quoting(folder / "deep" / csv_file.name, normal.stat().st_size)
        bomb = shapes.gzip_bomb(folder / "bomb" / f"{csv_file.name}.gz", GZIP_BOMB_BYTES)
        peaks = []
        files = [("normal", normal), ("huge_field", huge), ("tiny_lines", tiny),
                 ("deep_quoting", deep)]  # fmt: skip
        for name, path in files:
            lines = shapes.line_count(path)
            runs = [self.migrate(conn, path) for _ in range(self.reps)]
            peaks.append(max(m for _, m in runs))
            self.record(f"migrate_{name}", _mb_rate(path, lines, [s for s, _ in runs], peaks[-1]))
            runs = [self.upload(conn, url, path) for _ in range(self.reps)]
            peaks.append(max(m for _, m in runs))
            self.record(f"upload_{name}", _mb_rate(path, lines, [s for s, _ in runs], peaks[-1]))
        argv = [*CLI, "migrate", "--csv-dir", str(bomb.parent)]
        runs = [run_refused(argv, self.env()) for _ in range(self.reps)]
        peaks.append(max(m for _, m in runs))
        self.record("gzip_bomb_refused_s", {
            "value": round(statistics.median(s for s, _ in runs), 3),
            "seconds": [round(s, 4) for s, _ in runs], "peak_rss_mb": round(peaks[-1], 1),
            "expands_to_mb": GZIP_BOMB_BYTES >> 20,
        })  # fmt: skip
        self.record("shapes_peak_rss_mb", {"value": round(max(peaks), 1)})

    def migrate(self, conn: psycopg.Connection, path: Path) -> tuple[float, float]:
        """`dataarch migrate` of the folder holding path, on emptied tables."""
        self.reset(conn, reference=False)
        return run_child([*CLI, "migrate", "--csv-dir", str(path.parent)], self.env())

    def upload(self, conn: psycopg.Connection, url: str, path: Path) -> tuple[float, float]:
        """POST one CSV file to the server, streamed from disk: (seconds, the
        server's peak memory in MB meanwhile). Every line is accounted for."""
        self.reset(conn, reference=False)
        reset_peak_rss(self.server_pid)
        headers = {**self.auth, "Content-Type": "text/csv"}
        with path.open("rb") as body, httpx.Client(base_url=url, timeout=600) as http:
            start = time.perf_counter()
            answer = http.post("/tables/employees/csv", content=body, headers=headers)
            seconds = time.perf_counter() - start
        self.check(answer)
        summary = answer.json()
        if summary["inserted"] + summary["rejected"] != summary["submitted"]:
            raise BenchFailure(f"an upload lost lines: {summary}", self.server_log)
        return seconds, peak_rss_mb(self.server_pid)

    def measure_huge_numbers(self, conn: psycopg.Connection, body: str) -> None:
        """A batch whose every id is 1e131071 (8 bytes of JSON, 131 072 digits
        written out): it is judged as fast as a normal one (issue 29)."""
        rows = json.loads(body)
        huge = json.dumps([{**row, "employee_id": 0} for row in rows]).replace(
            '"employee_id": 0', '"employee_id": 1e131071'
        )

        def send() -> None:
            conn.execute(INGEST_SQL, (huge,))

        self.record("ingest_huge_numbers", repeat(len(rows), self.reps, lambda: None, send))

    def measure_http_overhead(self, conn: psycopg.Connection, url: str, bodies: list[str]) -> None:
        """p50 of one 1000-row POST over p50 of the same call made directly;
        beside it, its bound: the same POST to a bare Litestar app
        (bench/bare_api.py). The three alternate, 60 of each: at 20, one
        run's ratio wandered by +-0.05. And the CPU a request costs each
        server, and this client each way (the HTTP path's overhead is CPU
        on both sides of the socket)."""
        full = [b for b in bodies if b.count('"employee_id"') == 1000][:60] or bodies[:60]
        times: dict[str, list[float]] = {"direct": [], "http": [], "bare": []}
        client = {"direct": 0.0, "http": 0.0, "bare": 0.0}  # this thread's CPU, each way
        with (
            self.serving(self.work / "bare.log", BARE_API) as (bare_url, bare_pid),
            httpx.Client(base_url=url, headers=self.json_auth, timeout=120) as http,
            httpx.Client(base_url=bare_url, headers=self.json_auth, timeout=120) as bare_http,
        ):
            send = {
                "direct": lambda body: conn.execute(INGEST_SQL, (body,)),
                "http": lambda body: self.check(http.post(INGEST_PATH, content=body)),
                "bare": lambda body: self.check(bare_http.post(INGEST_PATH, content=body)),
            }
            pids = {"server": self.server_pid, "bare_server": bare_pid}
            for way in times:  # the bare server's first calls plan and cache, as ours did
                for body in full[:HTTP_WARMUP]:
                    self.reset(conn, reference=False)
                    send[way](body)
            before = {k: threads_cpu_seconds(pid) for k, pid in pids.items()}  # idle but for POSTs
            for body in full:
                for way in times:
                    self.reset(conn, reference=False)
                    start, cpu = time.perf_counter(), time.thread_time()
                    send[way](body)
                    times[way].append(time.perf_counter() - start)
                    client[way] += time.thread_time() - cpu
            server = {k: threads_cpu_seconds(pid) - before[k] for k, pid in pids.items()}
        ms = lambda seconds: round(seconds * 1000 / len(full), 3)  # noqa: E731  # a request
        direct = p50_ms(times["direct"])
        self.record("http_overhead", {
            "value": round(p50_ms(times["http"]) / direct, 3),
            "http_p50_ms": p50_ms(times["http"]), "sql_p50_ms": direct,
            "cpu_ms": {"server": ms(server["server"]), "client_http": ms(client["http"]),
                       "client_direct": ms(client["direct"])},
        })  # fmt: skip
        self.record("http_overhead_bare", {
            "value": round(p50_ms(times["bare"]) / direct, 3),
            "http_p50_ms": p50_ms(times["bare"]), "sql_p50_ms": direct,
            "cpu_ms": {"server": ms(server["bare_server"]), "client_http": ms(client["bare"])},
        })  # fmt: skip

    # -- plumbing ----------------------------------------------------------------------

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def json_auth(self) -> dict[str, str]:
        return {**self.auth, "Content-Type": "application/json"}

    @staticmethod
    def count(conn: psycopg.Connection) -> int:
        return conn.execute("select count(*) from employees").fetchone()[0]

    @contextmanager
    def server(self) -> Iterator[str]:
        """dataarch serve on the bench's database; its process is self.server_pid."""
        with self.serving(self.server_log) as (url, self.server_pid):
            yield url

    @contextmanager
    def serving(self, log: Path, command: tuple[str, ...] = SERVE) -> Iterator[tuple[str, int]]:
        """A server that `command` starts on the bench's database, logging to
        `log`, stopped afterwards: its URL and process id."""
        proc, url = start_server(self.env(), cwd=PROJECT, log=log, command=command)
        try:
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    def check(self, answer: httpx.Response) -> None:
        """A failed request stops the bench: its figures would measure errors."""
        if answer.status_code >= 400:
            raise BenchFailure(
                f"{answer.request.method} {answer.request.url.path} answered"
                f" {answer.status_code}: {answer.text[:300]}", self.server_log,
            )  # fmt: skip

    def report(self) -> dict:
        figures = {name: figure_of(m) for name, m in self.measurements.items()}
        figures |= {  # a file's lines/s beside its MB/s: "name.lines_per_s"
            f"{name}.lines_per_s": m["lines_per_s"]
            for name, m in self.measurements.items()
            if "lines_per_s" in m
        }
        ratios, targets = {}, {}
        for name, (top, bottom, op, target) in TARGETS.items():
            if top not in figures or (bottom and bottom not in figures):
                continue  # a peer that is not installed (pgloader)
            value = figures[top] / figures[bottom] if bottom else figures[top]
            ratios[name] = round(value, 3)
            met = value >= target if op == ">=" else value <= target
            targets[name] = {"value": round(value, 3), "target": f"{op} {target}", "met": met}
            bound = BOUNDS.get(name, ("",))[0]
            if bound in figures:
                value = figures[bound] / figures[bottom] if bottom else figures[bound]
                targets[name]["bound"] = round(value, 3)
        return {
            "rows": self.rows,
            "bad_ratio": self.bad_ratio,
            "sample_rows": self.sample,
            "measurements": self.measurements,
            "ratios": ratios,
            "targets": targets,
            "not_measured": dict(self.not_measured),
        }


# The keys a measurement may hold its figure under, in the order looked
# for, and how the table shows each.
FIGURES = {"rows_per_s": "{:,} rows/s", "mb_per_s": "{:,} MB/s", "p50_ms": "{} ms", "value": "{}"}


def _figure_key(measurement: dict) -> str:
    for key in FIGURES:
        if key in measurement:
            return key
    raise KeyError(f"no figure in {measurement}")


def figure_of(measurement: dict) -> float:
    """The one number a measurement is judged by."""
    return measurement[_figure_key(measurement)]


def format_table(result: dict) -> str:
    lines = [f"dataarch bench: {result['rows']} rows, {result['bad_ratio']:.0%} bad", ""]
    lines.append(f"{'measurement':24s} {'figure':>14s}")
    for name, m in result["measurements"].items():
        figure = FIGURES[_figure_key(m)].format(figure_of(m))
        lines.append(f"{name:24s} {figure:>14s}")
    width = max(map(len, TARGETS))
    lines += ["", f"{'target':{width}s} {'value':>9s} {'goal':>8s}  met"]
    for name, t in result["targets"].items():
        met = "yes" if t["met"] else "NO"
        bound = f"  ({BOUNDS[name][1]}: {t['bound']})" if "bound" in t else ""
        lines.append(f"{name:{width}s} {t['value']:>9} {t['target']:>8s}  {met:3s}{bound}".rstrip())
    for name, (top, bottom, _, _) in TARGETS.items():
        if name not in result["targets"]:
            why = [result["not_measured"].get(m) for m in (top, bottom)]
            lines.append(
                f"{name:{width}s} not measured: {next((w for w in why if w), 'not in this run')}"
            )
    if "citus" in result:
        lines += ["", f"Citus nodes over {result['citus_network']}"]
        lines += [f"{'same run':24s} {'one server':>14s} {'Citus 1+2':>14s} {'Citus/one':>10s}"]
        for name in DISTRIBUTED:
            one, dist = result["measurements"][name], result["citus"][name]
            key = "rows_per_s" if "rows_per_s" in one else "p50_ms"
            unit = " rows/s" if key == "rows_per_s" else " ms"
            ratio = dist[key] / one[key]
            lines.append(f"{name:24s} {one[key]:>11,}{unit} {dist[key]:>11,}{unit} {ratio:>10.2f}")
        lines += _node_cpu_table(result)
    return "\n".join(lines)


def _node_cpu_table(result: dict) -> list[str]:
    """CPU seconds each node spent a path's unit (1000 rows, or one KPI
    request), at each cluster size, and the rate one core a node would allow."""
    lines = ["", "CPU seconds a node spent (per 1000 rows; kpis: per request)"]
    lines.append(f"{'path, workers':20s} {'coordinator':>12s} {'worker 1':>9s} {'worker 2':>9s}"
                 f"  {'one core a node':>18s}")  # fmt: skip
    for path in NODE_CPU:
        for workers in CITUS_WORKERS:
            m = result.get(f"citus_{workers}_workers", {}).get(f"cpu_{path}")
            if not m:
                continue
            widths = {"coordinator": 12, "worker 1": 9, "worker 2": 9}
            shown = " ".join(f"{m['nodes'].get(n, '-'):>{w}}" for n, w in widths.items())
            unit = "rows/s" if m["per"] == "1000 rows" else "req/s"
            lines.append(f"{f'{path}, {workers}':20s} {shown}  {m['value']:>11,} {unit}")
    return lines


def _mb_rate(path: Path, lines: int, seconds: list[float], peak_mb: float) -> dict:
    """MB/s of a file of `lines` lines as the median of repetitions, its
    lines/s, and the peak memory."""
    size, median = path.stat().st_size, statistics.median(seconds)
    return {
        "mb": round(size / shapes.MB, 1),
        "seconds": [round(s, 4) for s in seconds],
        "mb_per_s": round(size / shapes.MB / median, 2),
        "lines_per_s": round(lines / median),
        "peak_rss_mb": round(peak_mb, 1),
    }


def _row_objects(csv_file: Path, columns: tuple[str, ...]) -> Iterator[dict]:
    """The file's records as row objects keyed by column name, as an API client
    typically sends them; surplus fields keep a name, so they are unexpected."""
    with csv_file.open("rb") as f:
        for record in Reader(f).records():
            fields = record.fields or (record.raw,)
            names = [*columns, *(f"field_{i}" for i in range(len(columns), len(fields)))]
            yield {n: v for n, v in zip(names, fields, strict=False) if v is not None}
