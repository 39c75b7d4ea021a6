"""A backup worker: joins the backup's snapshot and encodes each part of a
table it is sent into Avro blocks (see dump._blocks, which starts it).

    python -m backup.worker   (stdin and stdout are its parent's pipes)

On stdin, pickled: (conninfo, snapshot, parent pid, lock_timeout in ms),
then one Part a task; on stdout, pickled, (blocks, None) or (None, error) a
task, in the order the tasks came. Two pipes, not multiprocessing: nothing
is shared but them, and no helper process runs beside the workers (the
resource tracker a spawned pool needs held 12 MB of a 100 MB backup).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
from typing import BinaryIO

import psycopg
from psycopg import sql

from backup.dump import Part, encode

# A worker's session ends by itself if it sits in its transaction this long
# (its parent gone, say): it holds the backup's snapshot and table locks.
IDLE_MS = 60_000
APPLICATION_NAME = "dataarch backup worker"
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (kill -9
    included): an orphaned worker would hold its session, locks and snapshot
    until its task ended, or forever while it waits for the next one."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _join_snapshot(conninfo: str, snapshot: str, lock_ms: int) -> psycopg.Connection:
    idle = f"-c idle_in_transaction_session_timeout={IDLE_MS}"
    conn = psycopg.connect(
        conninfo, application_name=APPLICATION_NAME, options=f"-c lock_timeout={lock_ms} {idle}"
    )
    conn.execute("set transaction isolation level repeatable read, read only")
    conn.execute(sql.SQL("set transaction snapshot {}").format(snapshot))
    return conn


def _answer(out: BinaryIO, blocks: bytes | None, error: BaseException | None) -> None:
    try:
        pickle.dump((blocks, error), out, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # an error pickle refuses
        pickle.dump((None, RuntimeError(f"{type(error).__name__}: {error}")), out)
    out.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    tasks = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not land in the answers
    conninfo, snapshot, parent, lock_ms = pickle.load(tasks)
    _die_with(parent)
    try:
        conn = _join_snapshot(conninfo, snapshot, lock_ms)
    except psycopg.Error as exc:
        _answer(out, None, exc)
        return
    while True:
        try:
            part: Part = pickle.load(tasks)
        except EOFError:  # no more parts: the parent closed the pipe
            return
        try:
            _answer(out, encode(conn, part), None)
        except Exception as exc:
            _answer(out, None, exc)
            return


if __name__ == "__main__":
    main()
