"""The HTTP client behind `dataarch ingest|get|rejections` (it replaces the
seed's client.py). A CSV of any size goes up in batches of at most 1000 rows
over one keep-alive connection. Each batch carries an Idempotency-Key made of
this run's id and the batch's number: a retry of the batch within the run is
never applied twice, and every run sends its rows anew (a key derived from
the content would replay an earlier run's answer, for rows a restore may
have removed since)."""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dataarch import logs
from dataarch.csvrecords import PLAIN, Dialect, Reader
from dataarch.dictionary import Dictionary
from dataarch.errors import NotRunning
from dataarch.rejects import decode

BATCH_ROWS = 1000
Row = list[str | None] | str
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
    resolved: int = 0  # earlier rejections these rows resolved
    header: str | None = None  # the header line skipped
    by_reason: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)


class Unreachable(NotRunning):
    """The API did not answer within the retry time; the message says where."""


class ApiClient:
    """Requests to the API, retried while it is unreachable or answers
    502/503/504, for at most `retry_for` seconds in all; `on_retry` hears at
    once what is being retried, so a person is never left in silence."""

    def __init__(
        self,
        url: str,
        token: str,
        retry_for: float = 20.0,
        on_retry: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry_for = retry_for
        self.on_retry = on_retry
        self._dictionary: Dictionary | None = None
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(60.0, connect=3.0),
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, body: Callable[[], Iterable[bytes]] | None = None,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """One request, retried with backoff on connection errors and 502/503/504.
        `body` makes a streamed body afresh for each attempt."""
        deadline = time.monotonic() + self.retry_for
        for attempt in itertools.count():
            if body is not None:
                kwargs["content"] = body()
            response: httpx.Response | None = None
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"cannot reach the API at {self.url} ({type(exc).__name__})"
            else:
                if response.status_code not in RETRYABLE_STATUS:
                    break
                problem = f"the API answered {response.status_code}"
            pause = min(0.25 * 2**attempt, 4.0)
            if time.monotonic() + pause > deadline:
                if response is None:
                    waited = f"; gave up after {self.retry_for:g} s" if self.retry_for else ""
                    raise Unreachable(f"{problem}{waited}")
                break  # the server's own answer is the best report
            if attempt == 0:  # said once; the outcome follows
                self.on_retry(f"{problem}; retrying for up to {self.retry_for:g} s")
            time.sleep(pause)
        assert response is not None
        if response.status_code >= 400:
            try:
                problem_doc = response.json()
            except ValueError:
                problem_doc = {"detail": response.text[:200]}
            raise ApiError(response.status_code, problem_doc)
        return decode(response.text)

    def dictionary(self) -> Dictionary:
        """The server's data dictionary (GET /dictionary), read once."""
        if self._dictionary is None:
            self._dictionary = Dictionary.from_json(self.request("GET", "/dictionary"))
        return self._dictionary

    def table(self, name: str) -> str:
        """name, when the server has such a table; else ValueError naming its tables."""
        return self.dictionary().require(name)

    def post_rows(self, table: str, body: bytes, key: str) -> dict[str, Any]:
        return self.request(
            "POST",
            f"/tables/{table}/rows",
            content=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )


def record_rows(reader: Reader) -> Iterator[list[str | None] | str]:
    """The rows to send for a CSV file's records (dataarch/csvrecords.py):
    each record as the array of its fields, in column order, an empty field
    as null (absent); a record that could not be read as its raw text, which
    the server logs as malformed_line. The server judges them as it judges
    the same records migrated from a file."""
    for record in reader.records():
        yield record.raw if record.fields is None else list(record.fields)


def batches(rows: Iterator[Row], size: int = BATCH_ROWS) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest_file(
    client: ApiClient,
    table: str,
    path: Path,
    dialect: Dialect = PLAIN,
    progress: Callable[[float, float], None] = lambda done, total: None,
) -> IngestSummary:
    """Send the whole file. A batch the server refuses (a bad request) is
    recorded and the rest still go; a refused token (401/403) or a server
    that stays unreachable stops the run at once, with what was sent so far
    in the summary."""
    total = path.stat().st_size
    summary = IngestSummary()
    run = secrets.token_hex(8)
    with path.open("rb") as f:
        reader = Reader(f, dialect, client.dictionary()[client.table(table)].columns)
        for batch in batches(record_rows(reader)):
            body = json.dumps(batch, ensure_ascii=False).encode()
            try:
                result = client.post_rows(
                    table, body, f"dataarch-ingest-{run}-{summary.batches + 1}"
                )
            except ApiError as exc:
                if exc.status in (401, 403):
                    raise
                summary.refused.append(f"batch {summary.batches + 1}: {exc}")
            else:
                summary.replayed += bool(result.get("replayed"))
                summary.inserted += result["inserted"]
                summary.rejected += result["rejected"]
                summary.resolved += result.get("resolved", 0)
                summary.by_reason.update(r["reason_code"] for r in result["rejections"])
                logs.event(log, "batch sent", table=table, batch_id=result["batch_id"],
                           submitted=result["submitted"], inserted=result["inserted"],
                           rejected=result["rejected"])  # fmt: skip
            summary.batches += 1
            summary.sent += len(batch)
            progress(reader.bytes, total)
    summary.header = reader.header
    return summary


def upload_file(
    client: ApiClient,
    table: str,
    path: Path,
    dialect: Dialect = PLAIN,
    progress: Callable[[float, float], None] = lambda done, total: None,
    force: bool = False,
) -> dict[str, Any]:
    """POST the file to /tables/{table}/csv as it is, streamed; the server
    reads it as `dataarch migrate` would. A retry sends it again from the
    start: a load that failed left nothing behind, and one that succeeded
    makes the retry a no-op the answer says is one."""
    total = path.stat().st_size

    def chunks() -> Iterator[bytes]:
        sent = 0
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sent += len(chunk)
                progress(sent, total)
                yield chunk

    params = {"file": path.name, "delimiter": dialect.delimiter, "encoding": dialect.encoding,
              "header": str(dialect.header).lower(), "force": str(force).lower()}  # fmt: skip
    return client.request(
        "POST", f"/tables/{table}/csv", body=chunks, params=params,
        headers={"Content-Type": "text/csv", "Content-Length": str(total)},
        timeout=httpx.Timeout(10.0, read=None),  # loading a large file takes a while
    )  # fmt: skip


def describe(summary: IngestSummary) -> str:
    lines = [
        f"sent {summary.sent} rows in {summary.batches} batches: {summary.inserted} inserted,"
        f" {summary.rejected} rejected"
    ]
    if summary.resolved:
        lines.append(f"  {summary.resolved} earlier rejection(s) resolved")
    if summary.replayed:
        lines.append(f"  {summary.replayed} batch(es) had been applied by an earlier attempt")
    lines += [f"  {reason}: {n}" for reason, n in sorted(summary.by_reason.items())]
    lines += [f"  refused {refusal}" for refusal in summary.refused]
    return "\n".join(lines)
