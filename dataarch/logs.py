"""Structured logs: one JSON object per line, to a log file (var/log/
dataarch.log, or DATAARCH_LOG_FILE), and to stderr only when JSON is asked
for there (--log-format json or DATAARCH_LOG_FORMAT=json: a service whose
log collector reads stderr). Otherwise stderr carries what a person reads,
terminal or pipe alike (`2>&1 | tee` shows the same lines): only warnings
and errors, one short line each. Events carry ids, counts and durations;
never row contents, never tokens; an unexpected error carries its
traceback."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMATS = ("auto", "json", "human")  # auto: human (kept: earlier scripts pass it)
# the request an API log line belongs to (set by the app's middleware)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def _stamp_request_id(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """Every record carries the request it was made in, read when it is made
    (a handler may format it later, outside the request)."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    return make


logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if (rid := getattr(record, "request_id", None)) is not None:
            entry["request_id"] = rid
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[0]:
            entry["error"] = record.exc_info[0].__name__
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        detail = fields.get("message") or ""
        return f"dataarch: {record.levelname.lower()}: {record.getMessage()}" + (
            f": {detail}" if detail else ""
        )


def configure(log_file: Path | None = None, fmt: str = "auto", level: int = logging.INFO) -> None:
    """Send every logger's records where the format says (see the module's docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"the log format is one of {', '.join(FORMATS)}, not {fmt!r}")
    handlers: list[logging.Handler] = []
    console = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        console.setFormatter(JsonFormatter())
    else:
        console.setFormatter(HumanFormatter())
        console.setLevel(logging.WARNING)
    handlers.append(console)
    if log_file:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:  # a read-only tree: the command still runs, and says so
            print(f"dataarch: not logging to {log_file}: {exc.strerror}", file=sys.stderr)
        else:
            to_file.setFormatter(JsonFormatter())
            handlers.append(to_file)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, **fields: Any) -> None:
    logger.info(name, extra={"fields": fields})


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """`with timed() as t: ...` then t["duration_ms"]."""
    result: dict[str, float] = {}
    start = time.perf_counter()
    try:
        yield result
    finally:
        result["duration_ms"] = round((time.perf_counter() - start) * 1000, 2)
