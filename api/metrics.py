"""The metrics GET /metrics serves (api/health.py), in Prometheus text format.

    dataarch_ingest_rows_total{table,outcome}        rows inserted or rejected (API and CSV)
    dataarch_batch_duration_seconds{table}           time per ingested batch or CSV file
    dataarch_http_requests_total{route,method,status}
    dataarch_http_request_duration_seconds{route,method}
    dataarch_pool_connections, dataarch_pool_waiting  the request pool, sampled when scraped
    dataarch_open_rejections{table}                  what an operator alerts on, read from
    dataarch_table_rows{table}                         the database when scraped, at most
    dataarch_full_backup_age_seconds                   once every CACHE_SECONDS

Each application has a registry of its own (tests build many)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from psycopg_pool import AsyncConnectionPool

BATCH_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CACHE_SECONDS = 5.0  # a scrape every second costs the database one query in five
FROM_THE_DATABASE = """
select t.table_name,
    (select count(*) from ingest_errors as e where e.table_name = t.table_name
     and e.resolved_at is null and e.closed_at is null),
    (select greatest(c.reltuples, s.n_live_tup)::bigint from pg_class as c
     left join pg_stat_all_tables as s on s.relid = c.oid where c.oid = t.table_name::regclass),
    (select extract(epoch from now() - max(b.started_at)) from backup_sets as b
     where b.kind = 'full')
from unnest(_data_tables()) as t (table_name)
"""


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.rows = Counter("dataarch_ingest_rows", "Rows ingested, by table and outcome",
                            ["table", "outcome"], registry=self.registry)  # fmt: skip
        self.batches = Histogram(
            "dataarch_batch_duration_seconds", "Time per batch or CSV file", ["table"],
            buckets=BATCH_SECONDS, registry=self.registry,
        )  # fmt: skip
        self.requests = Counter("dataarch_http_requests", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("dataarch_http_request_duration_seconds", "HTTP request time",
                                 ["route", "method"], buckets=BATCH_SECONDS,
                                 registry=self.registry)  # fmt: skip
        self.pool_size = Gauge("dataarch_pool_connections", "Connections in the request pool",
                               registry=self.registry)  # fmt: skip
        self.pool_waiting = Gauge("dataarch_pool_waiting", "Requests waiting for a connection",
                                  registry=self.registry)  # fmt: skip
        self.open_rejections = Gauge("dataarch_open_rejections", "Rejections neither resolved"
                                     " nor closed", ["table"], registry=self.registry)  # fmt: skip
        self.table_rows = Gauge("dataarch_table_rows", "Rows of a table (the statistics')",
                                ["table"], registry=self.registry)  # fmt: skip
        self.backup_age = Gauge(
            "dataarch_full_backup_age_seconds",
            "Seconds since the newest full backup set began (NaN: none)", registry=self.registry,
        )  # fmt: skip
        self._read_at = float("-inf")

    def batch(self, table: str, inserted: int, rejected: int, seconds: float) -> None:
        self.rows.labels(table, "inserted").inc(inserted)
        self.rows.labels(table, "rejected").inc(rejected)
        self.batches.labels(table).observe(seconds)

    async def read_database(self, pool: AsyncConnectionPool) -> None:
        """The database's gauges, read at most every CACHE_SECONDS."""
        if time.monotonic() - self._read_at < CACHE_SECONDS:
            return
        async with pool.connection(timeout=2) as conn:
            cursor = await conn.execute(FROM_THE_DATABASE)
            rows = await cursor.fetchall()
        for table, open_, count, age in rows:
            self.open_rejections.labels(table).set(open_)
            self.table_rows.labels(table).set(count)
            self.backup_age.set(float("nan") if age is None else float(age))
        self._read_at = time.monotonic()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
