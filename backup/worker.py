"""A backup or restore worker: a process of its own that shares a table's
Python work with the one that started it (pipes.WorkerProcess). Nothing in
the package imports this module: it runs as

    python -m backup.worker   (stdin and stdout are its parent's pipes)

On stdin, pickled: (job, parent pid, *the job's arguments), then, for an
encode job, one Part a task; on stdout, pickled, (result, None) or (None,
error) a task, in the order the tasks came.

- encode (dump._blocks): joins the backup's snapshot (dump.join_snapshot)
  and reads each Part it is sent as framed Avro blocks (the database
  encodes the records).
- decode (restore.record_rows): reads a backup file and decodes its share
  of the chunks of blocks into row tuples, sent unasked, in file order.

Two pipes, not multiprocessing: nothing is shared but them, and no helper
process runs beside the workers (the resource tracker a spawned pool needs
held 12 MB of a 100 MB backup).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
from pathlib import Path
from typing import BinaryIO

_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (kill -9
    included): an orphaned worker would hold its session, locks and snapshot
    until its task ended, or forever while it waits for the next one."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _answer(out: BinaryIO, result: object, error: BaseException | None) -> None:
    try:
        pickle.dump((result, error), out, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # an error pickle refuses
        pickle.dump((None, RuntimeError(f"{type(error).__name__}: {error}")), out)
    out.flush()


def _encode(tasks: BinaryIO, out: BinaryIO, conninfo: str, snapshot: str, lock_ms: int) -> None:
    import psycopg

    from backup.dump import encode, join_snapshot

    try:
        conn = join_snapshot(conninfo, snapshot, lock_ms)
    except psycopg.Error as exc:
        _answer(out, None, exc)
        return
    while True:
        try:
            part = pickle.load(tasks)
        except EOFError:  # no more parts: the parent closed the pipe
            return
        try:
            _answer(out, encode(conn, part), None)
        except Exception as exc:
            _answer(out, None, exc)
            return


def _decode(out: BinaryIO, path: str, names: list[str], size: int, every: int, mine: int) -> None:
    from backup.restore import chunk_rows

    try:
        for _, rows in chunk_rows(Path(path), names, size, every, mine):
            if rows is not None:
                _answer(out, rows, None)
    except Exception as exc:  # fastavro raises many types on damaged data
        _answer(out, None, exc)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    tasks = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not land in the answers
    job, parent, *args = pickle.load(tasks)
    _die_with(parent)
    if job == "encode":
        _encode(tasks, out, *args)
    elif job == "decode":
        _decode(out, *args)


if __name__ == "__main__":
    main()
