"""The HTTP client behind `dataarch ingest|get|rejections` (it replaces the
seed's client.py). A CSV of any size goes up in batches of at most 1000 rows
over one keep-alive connection. Each batch carries an Idempotency-Key made of
this run's id and the batch's number: a retry of the batch within the run is
never applied twice, and every run sends its rows anew (a key derived from
the content would replay an earlier run's answer, for rows a restore may
have removed since)."""

from __future__ import annotations

import csv
import json
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dataarch import logs

COLUMNS = {
    "departments": ("department_id", "department_name"),
    "jobs": ("job_id", "job_name"),
    "employees": ("employee_id", "employee_name", "hiring_date", "department_id", "job_id"),
}
BATCH_ROWS = 1000
log = logging.getLogger("dataarch.client")
RETRYABLE_STATUS = {502, 503, 504}


class ApiError(RuntimeError):
    """The server refused a request; the message is its problem detail."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        detail = problem.get("detail") or problem.get("title") or ""
        super().__init__(f"HTTP {status}: {detail}")


@dataclass
class IngestSummary:
    batches: int = 0
    sent: int = 0
    inserted: int = 0
    rejected: int = 0
    replayed: int = 0  # batches the server had applied already (a retry whose answer was lost)
    by_reason: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)


class ApiClient:
    def __init__(self, url: str, token: str, retries: int = 6, timeout: float = 60.0) -> None:
        self.retries = retries
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request, retried with backoff on connection errors and 502/503/504."""
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                if response.status_code not in RETRYABLE_STATUS or attempt == self.retries:
                    break
            time.sleep(min(0.25 * 2**attempt, 8.0))
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text[:200]}
            raise ApiError(response.status_code, problem)
        return response.json()

    def post_rows(self, table: str, body: bytes, key: str) -> dict[str, Any]:
        return self.request(
            "POST",
            f"/tables/{table}/rows",
            content=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )


def csv_rows(path: Path, table: str) -> Iterator[dict[str, str]]:
    """Row objects from a header-less CSV; an empty field is left out (missing_field),
    surplus fields keep a name so the server can say they are unexpected."""
    columns = COLUMNS[table]
    with path.open(newline="", encoding="utf-8-sig") as f:
        for fields in csv.reader(f):
            if not fields:
                continue  # blank line
            names = [*columns, *(f"field_{i}" for i in range(len(columns) + 1, len(fields) + 1))]
            yield {name: value for name, value in zip(names, fields, strict=False) if value != ""}


def batches(rows: Iterator[dict[str, str]], size: int = BATCH_ROWS) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _progress(done: int, total: int, table: str) -> None:
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\r{table}: [{bar}] {done}/{total} rows")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def ingest_file(client: ApiClient, table: str, path: Path) -> IngestSummary:
    """Send the whole file; a refused batch is recorded and the rest still go."""
    with path.open("rb") as f:
        total = sum(1 for line in f if line.strip())
    summary = IngestSummary()
    run = secrets.token_hex(8)
    for batch in batches(csv_rows(path, table)):
        body = json.dumps(batch, ensure_ascii=False).encode()
        summary.batches += 1
        summary.sent += len(batch)
        try:
            result = client.post_rows(table, body, f"dataarch-ingest-{run}-{summary.batches}")
        except (ApiError, httpx.TransportError) as exc:
            summary.refused.append(f"batch {summary.batches}: {exc}")
        else:
            summary.replayed += bool(result.get("replayed"))
            summary.inserted += result["inserted"]
            summary.rejected += result["rejected"]
            summary.by_reason.update(r["reason_code"] for r in result["rejections"])
            logs.event(log, "batch sent", table=table, batch_id=result["batch_id"],
                       submitted=result["submitted"], inserted=result["inserted"],
                       rejected=result["rejected"])  # fmt: skip
        _progress(summary.sent, total, table)
    return summary


def describe(summary: IngestSummary) -> str:
    lines = [
        f"sent {summary.sent} rows in {summary.batches} batches: {summary.inserted} inserted,"
        f" {summary.rejected} rejected"
    ]
    if summary.replayed:
        lines.append(f"  {summary.replayed} batch(es) had been applied by an earlier attempt")
    lines += [f"  {reason}: {n}" for reason, n in sorted(summary.by_reason.items())]
    lines += [f"  refused {refusal}" for refusal in summary.refused]
    return "\n".join(lines)
