"""The metrics GET /metrics serves (api/health.py), in Prometheus text format.

    dataarch_ingest_rows_total{table,outcome}        rows inserted or rejected (API and CSV)
    dataarch_batch_duration_seconds{table}           time per ingested batch or CSV file
    dataarch_http_requests_total{route,method,status}
    dataarch_http_request_duration_seconds{route,method}
    dataarch_pool_connections, dataarch_pool_waiting  the request pool, sampled when scraped

Each application has a registry of its own (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

BATCH_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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

    def batch(self, table: str, inserted: int, rejected: int, seconds: float) -> None:
        self.rows.labels(table, "inserted").inc(inserted)
        self.rows.labels(table, "rejected").inc(rejected)
        self.batches.labels(table).observe(seconds)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
