"""CSV loading: read a file's records (dataarch/csvrecords.py says what a
record is), COPY them in binary into the database as pieces, and let
ingest_csv_lines validate and load them with the same core as ingest_batch.
Python moves bytes, reports progress and, for a large file, has several
sessions judge a share of its pieces each, at once (on Citus, sessions on
the workers); the rules stay in SQL. `dataarch migrate` loads files;
POST /tables/{table}/csv loads a request body the same way.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo

from dataarch import errors
from dataarch.csvrecords import PLAIN, CsvError, Dialect, Parser, Piece, Reader
from dataarch.dictionary import Dictionary
from dataarch.dictionary import read as read_dictionary
from dataarch.errors import Busy, Failure

COPY_PIECES = (
    "copy csv_pieces (piece, first_line, lines, is_record, body, fields, problem, reason)"
    " from stdin (format binary)"
)
PIECE_TYPES = ["int4", "int8", "int4", "bool", "text", "text[]", "text", "text"]
log = logging.getLogger("dataarch.migrate")
# From this size (~40 000 employee lines) a file is judged by several
# sessions at once: below it, a second session costs more than it saves.
SEVERAL_SESSIONS_FROM = 2 << 20
# The first session also receives and expands every piece into its records
# (its csv_lines hold the whole file: the lines' count, the rejected lines'
# text), the others only the pieces they judge. That costs about a tenth of
# judging them (a million lines, auto_explain: expanding 0.51 s, receiving
# 0.07 more than a helper, against 5.8 judging at a20df97), so the first
# session is given that much less to judge (_judging_sessions). Judging
# costs less since 7e62b3e (~4.3 s a million in one session), and a tenth
# still holds: the two sessions ended judging 0.05 s apart (22 and 25 of 47
# pieces).
EXPANDING_PER_JUDGING = 0.1
# Connection slots a migration leaves free for everyone else (the API).
KEEP_FREE_SLOTS = 2
FREE_SLOTS = """
select current_setting('max_connections')::int
    - current_setting('superuser_reserved_connections')::int
    - coalesce(current_setting('reserved_connections', true)::int, 0)
    - (select count(*) from pg_stat_activity where backend_type = 'client backend')
"""
# On Citus, the workers judge: the sessions that help go to them (the
# departments and jobs they check against are reference tables, on every
# node).
ON_CITUS = "select _citus_installed()"
CITUS_WORKERS = """
select nodename, nodeport from pg_dist_node
where isactive and noderole = 'primary' and groupid <> 0
order by groupid
"""
JUDGE_EXISTS = """
select coalesce(has_function_privilege(
    to_regprocedure('judge_csv_lines(text, text, integer[])'), 'execute'), false)
"""
_CHUNK = 1 << 20


Progress = Callable[[str], None]  # told what a migration is doing, a phrase at a time


def _quiet(_: str) -> None:
    pass


class MigrationError(Failure):
    """A file could not be migrated at all; nothing of it was loaded."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_files(dictionary: Dictionary, csv_dir: Path) -> Iterator[tuple[str, Path]]:
    """(table, file) pairs present in csv_dir, in load order (the
    dictionary's file names; the first present of a table's is read)."""
    if not csv_dir.is_dir():  # a file mistake: exit status 2, as any
        raise FileNotFoundError(f"{csv_dir} is not a directory")
    for table in dictionary.tables:
        for name in table.file_names:
            if (csv_dir / name).is_file():
                yield table.name, csv_dir / name
                break


def refuse_a_file_named_for_another_table(dictionary: Dictionary, table: str, name: str) -> None:
    """A file goes where it says: jobs.csv is not loaded into departments
    (the caller passes force to load it anyway)."""
    named = dictionary.table_named_by(name)
    if named is not None and named != table:
        raise MigrationError(
            f"{name} is named for {named}, not {table}: nothing was loaded"
            " (--force, or force=true over HTTP, loads it anyway)"
        )


def _header_check(
    conn: psycopg.Connection, table: str, name: str
) -> Callable[[tuple[str | None, ...] | None], None]:
    """What refuses a first line naming another table's columns (read now:
    the check runs while conn is busy with a COPY)."""
    tables = read_dictionary(conn).tables
    others = {t.columns: t.name for t in tables if t.name != table}

    def check(first: tuple[str | None, ...] | None) -> None:
        if first in others:
            raise MigrationError(
                f"{name}: its header names the columns of {others[first]}, not {table}: nothing"
                " was loaded (--force, or force=true over HTTP, loads it anyway)"
            )

    return check


def already_migrated(conn: psycopg.Connection, table: str, name: str, digest: str) -> dict | None:
    """The summary of an earlier load of the same content into `table`, if any."""
    return conn.execute("select already_migrated(%s, %s, %s)", (table, name, digest)).fetchone()[0]


def table_columns(conn: psycopg.Connection, table: str) -> tuple[str, ...]:
    """The data dictionary's columns of `table`, in CSV field order."""
    return tuple(conn.execute("select _require_table(%s)", (table,)).fetchone()[0])


def migrate_file(
    conn: psycopg.Connection,
    table: str,
    path: Path,
    progress: Progress | None = None,
    sessions: int = 2,
    dialect: Dialect = PLAIN,
    several_from: int = SEVERAL_SESSIONS_FROM,
    force: bool = False,
) -> dict:
    """Load one file in one transaction; return ingest_csv_lines' summary. A
    file of at least `several_from` bytes is judged by up to `sessions`
    sessions at once (the others change nothing but their own temporary
    tables), unless conn is already inside a transaction. `progress` is
    told what is happening, a short phrase at a time. A file whose first
    line names another table's columns is refused unless `force`."""
    report = progress or _quiet
    digest = sha256_of(path)
    with conn.transaction():  # a rerun reads no file again
        done = already_migrated(conn, table, path.name, digest)
    if done is not None:
        return done
    size = path.stat().st_size
    with path.open("rb") as f:
        return load(
            conn, table, f, path.name, digest, dialect, report,
            sessions=sessions, size=size, several_from=several_from, force=force,
        )  # fmt: skip


def load(
    conn: psycopg.Connection,
    table: str,
    source: BinaryIO | Iterable[bytes],
    name: str,
    digest: str | None,
    dialect: Dialect,
    report: Progress = _quiet,
    *,
    sessions: int = 1,
    size: int | None = None,
    several_from: int = SEVERAL_SESSIONS_FROM,
    force: bool = False,
) -> dict:
    """Load the records of `source` as the file `name` in one transaction;
    a source of `size` bytes, at least `several_from`, is judged by up to
    `sessions` sessions at once. digest None: the source's SHA-256 is
    computed as it is read (a stream). Unless `force`, a source whose first
    line names another table's columns is refused (nothing is loaded)."""
    # inside a caller's transaction, a helper would not see what it changed
    alone = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    if size is None or size < several_from:
        sessions = 1
    hashing = hashlib.sha256() if digest is None else None
    if hashing is not None:
        source = _hashed(source, hashing)
    with ExitStack() as stack:
        helpers = [] if alone else _helpers(conn, sessions - 1)
        for helper in helpers:
            stack.enter_context(helper)  # closing it rolls back whatever it still holds
        stack.enter_context(conn.transaction())
        try:  # any wait that runs out, in any session, says who holds what
            conn.execute("select csv_begin(%s)", (table,))  # waits while another load runs
            if digest is not None and (done := already_migrated(conn, table, name, digest)):
                return done  # the load it waited for was this same file
            reader = Reader(source, dialect, table_columns(conn, table))
            first = (lambda _: None) if force else _header_check(conn, table, name)
            shares = _send_pieces(reader, [conn, *helpers], report, size, first)
            if helpers:
                report(f"judging {reader.lines:,} lines in {len(helpers) + 1} sessions")
                _judge_in_sessions([conn, *helpers], shares, table, dialect)
                report(f"inserting and logging {reader.lines:,} lines")
            else:
                report(f"judging, inserting and logging {reader.lines:,} lines")
            if hashing is not None:
                digest = hashing.hexdigest()
            row = _ingest_lines(conn, table, name, digest, dialect, reader)
        except psycopg.errors.LockNotAvailable as exc:
            raise _busy(conn, table, exc) from exc
    summary = row[0]
    if reader.header is not None:
        summary["header_line"] = reader.header
    return summary


def _ingest_lines(
    conn: psycopg.Connection,
    table: str,
    name: str,
    digest: str | None,
    dialect: Dialect,
    reader: Reader,
) -> tuple:
    """ingest_csv_lines over what the sessions staged and judged; a file the
    database refuses whole is a MigrationError saying why."""
    try:
        return conn.execute(
            "select ingest_csv_lines(%s, %s, %s, %s, %s, %s)",
            (table, name, digest, dialect.delimiter, reader.lines, reader.header is not None),
        ).fetchone()
    except psycopg.Error as exc:
        if errors.of_error(exc).refusal:  # the file, refused whole: say why
            raise MigrationError(f"{exc.diag.message_primary}; nothing was loaded") from exc
        raise


def _busy(conn: psycopg.Connection, table: str, exc: psycopg.Error) -> Busy:
    """A load that waited past lock_timeout for a row another transaction
    held (a rejection being closed, a hire count being updated): who holds
    the tables it writes, asked on a new session (this one is aborted)."""
    said = exc.diag.message_primary or str(exc)
    if not errors.names_the_holder(said):  # PostgreSQL's bare "lock timeout": name them
        try:
            with psycopg.connect(_own_conninfo(conn), connect_timeout=3, autocommit=True) as asking:
                holders = asking.execute(
                    "select lock_holders_of(array[%s, 'ingest_batches', 'ingest_errors',"
                    " 'migrated_files'])",
                    (table,),
                ).fetchone()[0]
                said = errors.busy_message(table, holders)
        except psycopg.Error:
            pass  # the bare message it is
    return Busy(f"{said}; nothing was loaded: try again when it has finished")


def _hashed(source: BinaryIO | Iterable[bytes], digest: hashlib._Hash) -> Iterator[bytes]:
    chunks = iter(lambda: source.read(_CHUNK), b"") if hasattr(source, "read") else source
    for chunk in chunks:
        digest.update(chunk)
        yield chunk


def _send_pieces(
    reader: Reader,
    sessions: list[psycopg.Connection],
    report: Progress,
    size: int | None,
    check_first_line: Callable[[tuple[str | None, ...] | None], None],
) -> list[list[int]]:
    """COPY every piece to the first session, and to each other session the
    pieces it will judge (_judging_sessions); returns each session's share,
    the numbers of the pieces it judges. check_first_line sees line 1's
    fields as soon as they are read."""
    shares: list[list[int]] = [[] for _ in sessions]
    judges = _judging_sessions(len(sessions))
    with ExitStack() as stack:
        copies = []
        for session in sessions[1:]:
            session.execute("select csv_begin()")
        for session in sessions:
            copy = stack.enter_context(session.cursor().copy(COPY_PIECES))
            copy.set_types(PIECE_TYPES)
            copies.append(copy)
        of = f" of {size / 1e6:.1f}" if size else ""
        try:
            for number, piece in enumerate(reader.pieces()):
                if number == 0:
                    check_first_line(reader.first_fields)
                row = _row(number, piece)
                copies[0].write_row(row)
                judge = next(judges)
                if judge:
                    copies[judge].write_row(row)
                shares[judge].append(number)
                report(f"reading {reader.bytes / 1e6:.1f}{of} MB")
        except CsvError as exc:
            raise MigrationError(f"{exc}; nothing was loaded") from exc
    return shares


def _judging_sessions(sessions: int) -> Iterator[int]:
    """Which session judges each next piece: the one that would be done
    with it first, counting the first session's expanding of every piece
    (EXPANDING_PER_JUDGING). Two sessions: the first judges ~48 % of them."""
    done = [0.0] * sessions  # the work given to each, in pieces judged
    cost = [1.0] + [1.0 + EXPANDING_PER_JUDGING] * (sessions - 1)
    while True:
        done[0] += EXPANDING_PER_JUDGING
        judge = min(range(sessions), key=lambda k: done[k] + cost[k])
        done[judge] += cost[judge]
        yield judge


def _row(number: int, piece: Piece) -> tuple:
    fields = list(piece.fields) if piece.fields is not None else None
    return (number, piece.first_line, piece.lines, piece.record, piece.text, fields,
            piece.problem, piece.reason)  # fmt: skip


def _helpers(conn: psycopg.Connection, wanted: int) -> list[psycopg.Connection]:
    """Up to `wanted` more sessions to judge with: on Citus one on each worker
    in turn, elsewhere on conn's database; as many as the free connection
    slots allow, leaving KEEP_FREE_SLOTS of them to others."""
    if wanted <= 0:
        return []
    with conn.transaction():
        free = conn.execute(FREE_SLOTS).fetchone()[0] - KEEP_FREE_SLOTS
        on_citus = conn.execute(ON_CITUS).fetchone()[0]
        workers = conn.execute(CITUS_WORKERS).fetchall() if on_citus else []
    own = _own_conninfo(conn)
    at_workers = [make_conninfo(own, host=host, port=str(port)) for host, port in workers]
    helpers: list[psycopg.Connection] = []
    for number in range(min(wanted, free)):
        worker = at_workers[number % len(at_workers)] if at_workers else None
        try:
            helpers.append((worker and _worker_session(worker)) or psycopg.connect(own))
        except psycopg.OperationalError as exc:
            log.warning("judging in %d session(s): no more (%s)", number + 1, str(exc).strip())
            break
    return helpers


def _own_conninfo(conn: psycopg.Connection) -> str:
    """How to open another session as conn's role on conn's server."""
    return make_conninfo(conn.info.dsn, password=conn.info.password or None)


def _worker_session(conninfo: str) -> psycopg.Connection | None:
    """A session on a Citus worker that can judge there, or None: a worker
    may be unreachable from here, or lack the functions or the right to run
    them (Citus propagates them to the workers it knows when they are
    created); the coordinator judges instead."""
    try:
        session = psycopg.connect(conninfo, connect_timeout=5)
    except psycopg.OperationalError as exc:
        log.info("judging on the coordinator: %s", str(exc).strip())
        return None
    if session.execute(JUDGE_EXISTS).fetchone()[0]:
        session.rollback()
        return session
    session.close()
    return None


def _judge_in_sessions(
    sessions: list[psycopg.Connection], shares: list[list[int]], table: str, dialect: Dialect
) -> None:
    """Each session judges its share of the pieces, all at once; the
    helpers' verdicts are copied into the first session's pg_temp.judged_rows.
    Judging is per record and most of a migration's work; inserting stays
    in the one transaction that commits. Each helper then ends its
    transaction: the insert may drop foreign keys, which needs an exclusive
    lock on the tables the helpers read, and it would wait for a session that
    waits for it, a cycle PostgreSQL cannot see."""
    conn, *helpers = sessions
    judge = "select judge_csv_lines(%s, %s, %s::integer[])"
    with ThreadPoolExecutor(len(helpers)) as other_cores:
        theirs = [
            other_cores.submit(helper.execute, judge, (table, dialect.delimiter, share))
            for helper, share in zip(helpers, shares[1:], strict=True)
        ]
        conn.execute(judge, (table, dialect.delimiter, shares[0]))
        for judged in theirs:
            judged.result()
    for helper in helpers:
        _pipe(helper, "copy judged_rows to stdout (format binary)",
              conn, "copy judged_rows from stdin (format binary)")  # fmt: skip
        helper.rollback()


def _pipe(
    source: psycopg.Connection, copy_out: str, target: psycopg.Connection, copy_in: str
) -> None:
    """Rows from one session's COPY TO into another's COPY FROM, as bytes."""
    with target.cursor().copy(copy_in) as into:
        for chunk in _copied_out(source, copy_out):
            into.write(chunk)


def _copied_out(conn: psycopg.Connection, copy_out: str) -> Iterator[bytes]:
    """What a COPY ... TO STDOUT on conn sends, about _CHUNK bytes at a time.
    COPY sends a message a row, and psycopg's copy iterator costs ~0.7 us a
    message: libpq's messages are read here directly (500 000 verdicts read
    in 0.25 s instead of 0.38; piped in 0.5 s instead of 0.69)."""
    pgconn = conn.pgconn
    pgconn.send_query(copy_out.encode())
    if (result := pgconn.get_result()) is not None and result.status == pq.ExecStatus.COPY_OUT:
        buffer = bytearray()
        while (message := pgconn.get_copy_data(0))[0] >= 0:
            buffer += message[1]
            if len(buffer) >= _CHUNK:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
        result = pgconn.get_result()
    if result is None:
        raise psycopg.OperationalError(f"{copy_out}: no result ({pgconn.get_error_message()})")
    failed = result if result.status != pq.ExecStatus.COMMAND_OK else None
    while result is not None:  # libpq takes no new command before its last result
        result = pgconn.get_result()
    if failed is not None:
        raise psycopg.errors.error_from_result(failed, encoding=conn.info.encoding)


OPEN_CSV_REJECTIONS = (
    "select e.error_id, e.raw_line from ingest_errors as e"
    " join reason_codes as r on r.reason_code = e.reason_code and r.depends_on_other_rows"
    " where e.table_name = %s and e.raw_line is not null"
    " and e.resolved_at is null and e.closed_at is null order by e.error_id"
)


def retry_rejected(conn: psycopg.Connection, table: str, dialect: Dialect = PLAIN) -> dict:
    """Judge again, in one new batch, the open rejections of CSV lines of
    `table` whose reason depends on other rows (reason_codes says which: an
    unknown department or job, a taken id), for instance once the
    departments and jobs they named have arrived. A line that broke a rule
    of its own stays as it is. Returns retry_csv_rejections' summary."""
    parser = Parser(dialect.delimiter)
    with conn.transaction():
        conn.execute("select csv_begin(%s)", (table,))
        rejected = conn.execute(OPEN_CSV_REJECTIONS, (table,)).fetchall()
        with conn.cursor().copy(COPY_PIECES) as copy:
            copy.set_types(PIECE_TYPES)
            for number, (error_id, raw_line) in enumerate(rejected):
                _, fields, problem = parser.parse(raw_line)
                copy.write_row(_row(number, Piece(error_id, 1, raw_line, True, fields, problem)))
        return conn.execute(
            "select retry_csv_rejections(%s, %s)", (table, dialect.delimiter)
        ).fetchone()[0]


def describe_retry(summary: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_reason"].items()))
    return (
        f"{summary['table']}: {summary['retried']} rejected lines judged again:"
        f" {summary['inserted']} inserted, {summary['rejected']} still rejected"
        + (f" ({reasons})" if reasons else "")
        + f"; {summary['resolved']} rejections resolved [batch {summary['batch_id']}]"
    )


def describe(summary: dict) -> str:
    """One line a person reads: what happened to the file."""
    if summary["status"] == "already_migrated":
        still = summary.get("open_rejections") or 0
        return (
            f"{summary['file']} -> {summary['table']}: already migrated"
            f" (batch {summary['batch_id']}, {summary['migrated_at']}); skipped"
            + (f"; {still} of its lines rejected and open: `dataarch migrate"
               " --retry-rejected` judges them again" if still else "")
        )  # fmt: skip
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary["by_reason"].items()))
    spanning = summary["records"] + summary["blank"] + summary["header"] != summary["lines"]
    return (
        f"{summary['file']} -> {summary['table']}: {summary['lines']} lines,"
        + (" a header skipped," if summary["header"] else "")
        + (f" {summary['records']} records," if spanning else "")
        + f" {summary['inserted']} inserted, {summary['rejected']} rejected"
        + (f" ({reasons})" if reasons else "")
        + (f", {summary['blank']} blank skipped" if summary["blank"] else "")
        + (f", {summary['resolved']} earlier rejections resolved" if summary["resolved"] else "")
        + f" [batch {summary['batch_id']}]"
    )
