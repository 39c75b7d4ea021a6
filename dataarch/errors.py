"""The failures the programs expect, phrased for a person. The CLI turns
each into one line and its exit status; the API into a problem document."""

from __future__ import annotations

from dataclasses import dataclass


class Failure(RuntimeError):
    """An operation that could not be done; the message says why. Exit status 1."""

    status = 1


class Busy(Failure):
    """Another operation held what this one needed past lock_timeout; the
    message names it. Nothing changed. Exit status 4."""

    status = 4


def busy_message(subject: str, holders: str) -> str:
    """What a wait that ran out says, as the database's _table_busy says it
    (procedures/003): "employees is busy: dataarch restore (pid 42) holds it"."""
    return f"{subject} is busy: {holders} holds it"


def names_the_holder(message: str) -> bool:
    """Whether a 55P03's message says who holds what already (busy_message)."""
    return " is busy: " in message


class NotRunning(Failure):
    """A server (the database or the API) is not running or not reachable. Exit status 3."""

    status = 3


# -- SQLSTATEs: the one catalogue ----------------------------------------------------
# Every SQLSTATE the project's SQL raises (DATnn, tests/test_errors.py checks
# that none is missing) and every class of PostgreSQL error a request can
# meet: the HTTP status it answers, the title and type of its problem
# document, whether trying again later can succeed, and the command line's
# exit status. The API, the CLI, the backup and migration code and the README
# read it from here; nothing else maps an SQLSTATE.

FAILED, USAGE, NOT_RUNNING, BUSY = 1, 2, 3, 4  # the exit statuses an error may have
OLDER_SQL = (
    "the database's SQL may be older than this release: `dataarch db init` applies it"
    " (`dataarch db status` lists the code to apply)"
)

# a conflict PostgreSQL settled by stopping this operation: nobody holds
# anything to wait for any more
RUN_AGAIN = (
    "it and another operation each waited for the other, and this one was stopped;"
    " nothing changed: run it again"
)


@dataclass(frozen=True)
class SqlState:
    code: str  # an exact SQLSTATE ("DAT01") or a two-character class ("22")
    status: int
    title: str
    retry: bool = False
    # another operation holds what this one needs (the message says which):
    # nothing changed, try again when it has finished
    busy: bool = False
    usage: bool = False  # the caller's mistake (a name, a value): fix the command
    down: bool = False  # the server is not there to serve (not running, not reachable)
    hint: str | None = None  # what to do, said after the database's message

    @property
    def exit(self) -> int:
        """The command line's exit status."""
        if self.busy:
            return BUSY
        if self.down:
            return NOT_RUNNING
        return USAGE if self.usage else FAILED

    @property
    def refusal(self) -> bool:
        """Refused for what was asked (4xx): the database's message says why,
        and quotes nothing it should not."""
        return self.status < 500

    @property
    def type(self) -> str:
        """The problem document's `type`: this entry, by its code."""
        return f"urn:dataarch:problem:{self.code.lower()}"


CATALOGUE: tuple[SqlState, ...] = (
    SqlState("DAT00", 500, "Atomic batch rollback escaped (a bug)"),
    SqlState("DAT01", 404, "Unknown table", usage=True),
    SqlState("DAT02", 400, "Malformed request", usage=True),
    SqlState("DAT03", 422, "Batch of 0 or more than 1000 rows", usage=True),
    SqlState("DAT04", 422, "Not a CSV file of this table"),
    SqlState("DAT05", 422, "Idempotency-Key used for another request"),
    SqlState("DAT06", 422, "Backup does not hold the rows it recorded"),
    SqlState("DAT07", 409, "Table's keys are referenced by other tables"),
    SqlState("DAT08", 409, "A backup or restore of the table is running", retry=True, busy=True),
    SqlState("DAT09", 422, "No backup recorded this state"),
    SqlState("DAT10", 403, "Session holds a temporary object dataarch did not make"),
    SqlState("DAT11", 409, "Name taken"),
    SqlState("DAT12", 409, "Batch cannot be reverted"),
    SqlState("DAT13", 409, "Other batches depend on the batch"),
    SqlState("DAT14", 500, "A lock let go escaped (a bug)"),
    SqlState("22P02", 400, "Body is not JSON", usage=True),
    SqlState("22021", 400, "Body is not valid UTF-8", usage=True),
    SqlState("22", 400, "Invalid value", usage=True),
    SqlState("23", 409, "Constraint violated"),
    SqlState("25006", 503, "Database is read-only (a standby)", retry=True, down=True),
    SqlState("40001", 503, "Concurrent update conflict", retry=True, busy=True, hint=RUN_AGAIN),
    SqlState(
        "40P01", 503, "Deadlock with another operation", retry=True, busy=True, hint=RUN_AGAIN
    ),  # fmt: skip
    SqlState("40", 503, "Concurrent update conflict", retry=True, busy=True, hint=RUN_AGAIN),
    SqlState("42501", 500, "Database role lacks a privilege"),
    # a function, table or column this release's SQL defines is not there:
    # the code was upgraded and the database not yet (dataarch db init)
    *(
        SqlState(code, 500, "Database object missing", hint=OLDER_SQL)
        for code in ("42883", "42P01", "42703")
    ),
    SqlState("53", 503, "Database out of resources", retry=True),
    SqlState("54", 400, "Request too large or too deeply nested", usage=True),
    SqlState("55P03", 503, "Table busy (another operation holds it)", retry=True, busy=True),
    SqlState("57", 503, "Database shutting down or restarting", retry=True, down=True),
    SqlState("58", 503, "Database system error (its installation is broken)", retry=True),
    SqlState("08", 503, "Database unreachable", retry=True, down=True),
    SqlState("XX", 503, "Database internal error", retry=True),
)
_BY_CODE = {s.code: s for s in CATALOGUE}
UNREACHABLE = SqlState("unreachable", 503, "Database unreachable", retry=True, down=True)
UNEXPECTED = SqlState("unexpected", 500, "Unexpected database error")
# psycopg refused a value before sending it (a NUL in text): the caller's data
UNSENDABLE = SqlState("unsendable", 400, "Value the database cannot hold", usage=True)


def sqlstate(code: str | None) -> SqlState:
    """The catalogue's entry for a SQLSTATE: the exact code, else its class."""
    if code is None:
        return UNREACHABLE
    return _BY_CODE.get(code) or _BY_CODE.get(code[:2]) or UNEXPECTED


def of_error(error: Exception) -> SqlState:
    """The catalogue's entry for a psycopg error: by its SQLSTATE; one
    without (the server never answered) is unreachable, unless the driver
    refused a value before sending it (a DataError: a NUL in text)."""
    import psycopg

    code = getattr(error, "sqlstate", None)
    if code is None and isinstance(error, psycopg.DataError):
        return UNSENDABLE
    return sqlstate(code)
