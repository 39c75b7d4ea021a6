"""Every error is an RFC 9457 problem document (application/problem+json).
dataarch/errors.py says which status, title and retry advice each SQLSTATE
gets; this module turns exceptions into documents and documents them in
the OpenAPI description."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import psycopg
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsException
from psycopg_pool import PoolTimeout

from backup import BackupError, BusyError, StorageError
from dataarch import errors

log = logging.getLogger("dataarch.api")
PROBLEM = "application/problem+json"
RETRY_SOON = {"Retry-After": "1"}  # on every 503: the cause passes by itself


@dataclass
class Problem:
    """RFC 9457 problem details, as every error answers."""

    status: int
    title: str
    type: str = "about:blank"
    detail: str | None = None
    sqlstate: str | None = None
    """the database's SQLSTATE, for an error it raised (see the error catalogue)"""
    hint: str | None = None
    """what to do about it, when the database said"""
    errors: list[dict[str, Any]] | None = None
    """the parameters that failed validation"""


DESCRIPTIONS = {
    400: "malformed request: not JSON, a bad parameter, a value out of range, too deep",
    401: "missing or wrong bearer token",
    403: "the token's scope does not allow this route",
    404: "unknown table, row or page",
    406: "none of the media types the Accept header allows can be produced",
    408: "the body stopped arriving (DATAARCH_UPLOAD_IDLE_TIMEOUT); nothing was loaded",
    409: "a backup or restore of the table is running; retry later",
    413: "body too large",
    415: "wrong Content-Type",
    422: "a batch of 0 or more than 1000 rows, a reused Idempotency-Key, a refused file"
    " (not a CSV of the table, or named for another)",
    429: "too many failed token checks or sign-ins from this address; retry after Retry-After",
    503: "the database is unavailable or busy; retry after Retry-After seconds",
    507: "no space left for the backup",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI responses of a route's errors: the real problem schema, no
    generated examples (they were nonsense such as status 9361). A route
    behind the token guard (401) may also answer 429 (api/security.py)."""
    if 401 in statuses:
        statuses = (*statuses, 429)
    return {
        s: ResponseSpec(
            data_container=Problem,
            description=DESCRIPTIONS[s],
            media_type=PROBLEM,
            generate_examples=False,
        )  # fmt: skip
        for s in statuses
    }


def _problem(
    status: int, title: str, detail: str | None = None, type_: str | None = None, **extra: Any
) -> ProblemDetailsException:
    """A problem document. Without a `type` of its own it is about:blank,
    and its title is then the status's phrase (RFC 9457, 4.2.1)."""
    headers = extra.pop("headers", None)
    if status == 503:
        headers = {**(headers or {}), **RETRY_SOON}
    if type_ is None:
        title = HTTPStatus(status).phrase
    extra = {k: v for k, v in extra.items() if v is not None}
    return ProblemDetailsException(
        status_code=status, title=title, detail=detail or "", headers=headers,
        type_=type_, extra=extra or None,
    )  # fmt: skip


def database_problem(exc: psycopg.Error) -> ProblemDetailsException:
    """The catalogue says the status, the title and whether to retry. A 4xx says
    what the database said, as does a busy table's (it names the operation
    holding it, never data); another 5xx only its title (details can quote
    row contents), and is logged with the SQLSTATE and the database's
    message, and its traceback when it is a surprise."""
    entry = errors.of_error(exc)
    if entry.status < 500 or entry.busy:
        return _problem(entry.status, entry.title, exc.diag.message_primary or str(exc),
                        entry.type, sqlstate=exc.sqlstate, hint=exc.diag.message_hint,
                        headers=RETRY_SOON if entry.retry else None)  # fmt: skip
    fields = {"sqlstate": exc.sqlstate, "message": exc.diag.message_primary, "status": entry.status}
    log.error("database error", exc_info=exc if entry.status == 500 else None,
              extra={"fields": fields})  # fmt: skip
    advice = entry.hint or ("retry later" if entry.retry else "it has been logged")
    headers = RETRY_SOON if entry.retry else None
    return _problem(entry.status, entry.title, f"{entry.title}; {advice}", entry.type,
                    headers=headers)  # fmt: skip


def http_problem(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own errors (401, 404, 413, validation ...): the phrase as the
    title, our message as the detail, validation findings as `errors`."""
    phrase = HTTPStatus(exc.status_code).phrase
    detail = exc.detail if exc.detail != phrase else None
    return _problem(exc.status_code, phrase, detail, headers=exc.headers,
                    errors=exc.extra if isinstance(exc.extra, list) else None)  # fmt: skip


def backup_problem(exc: BackupError) -> ProblemDetailsException:
    """409 while a backup or restore holds the table, 507 or 503 when the backup
    directory cannot be written (the cause goes to the log: the answer names
    no server path), else 422 with the reason."""
    if isinstance(exc, StorageError):
        status = 507 if exc.no_space else 503
        log.error("backup storage", extra={"fields": {"message": str(exc), "status": status}})
        return _problem(status, "Backup directory not writable",
                        f"the server cannot write its backup directory: {exc.reason}",
                        "urn:dataarch:problem:backup-storage")  # fmt: skip
    if isinstance(exc, BusyError):
        return _problem(409, "Table busy", str(exc), "urn:dataarch:problem:busy",
                        headers=RETRY_SOON)  # fmt: skip
    return _problem(422, "Backup refused", str(exc), "urn:dataarch:problem:backup-refused")


def busy_problem(exc: errors.Busy) -> ProblemDetailsException:
    """What waited past lock_timeout and was named (a load, an install): the
    catalogue's entry for 55P03."""
    entry = errors.sqlstate("55P03")
    return _problem(entry.status, entry.title, str(exc), entry.type, sqlstate="55P03",
                    headers=RETRY_SOON)  # fmt: skip


def pool_problem(_: PoolTimeout) -> ProblemDetailsException:
    return _problem(503, "No database connection free", "no database connection came free;"
                    " retry later", "urn:dataarch:problem:no-connection")  # fmt: skip


def unexpected_problem(exc: Exception) -> ProblemDetailsException:
    log.error("unexpected error", exc_info=exc)
    return _problem(
        500, HTTPStatus(500).phrase, "unexpected error; it is logged with its request id"
    )


HANDLERS = {
    HTTPException: http_problem,
    psycopg.Error: database_problem,
    PoolTimeout: pool_problem,
    BackupError: backup_problem,
    errors.Busy: busy_problem,
    Exception: unexpected_problem,
}
