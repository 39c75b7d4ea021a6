"""The parent's side of a backup or restore worker (backup/worker.py, which
says what it does): a `python -m backup.worker` process on two pipes."""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class WorkerFailed(Exception):
    """The worker process ended before it answered."""


class WorkerProcess:
    """One `python -m backup.worker` process, given its job, fed tasks and
    read back in the same order."""

    def __init__(self, job: str, *args: Any) -> None:
        # the project's folder first, so the worker runs the code this process does
        paths = [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backup.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env,
        )  # fmt: skip
        self.send((job, os.getpid(), *args))

    def send(self, message: object) -> None:
        assert self.process.stdin is not None
        try:
            pickle.dump(message, self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # it ended: the next answer read says why

    def answer(self) -> Any:
        """Its next result; re-raises the error it sent, or WorkerFailed."""
        assert self.process.stdout is not None
        try:
            result, error = pickle.load(self.process.stdout)
        except (EOFError, pickle.UnpicklingError):
            raise WorkerFailed(f"exit status {self.process.wait()}") from None
        if error is not None:
            raise error
        return result

    def stop(self, at_once: bool) -> None:
        if at_once:
            self.process.kill()
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()  # type: ignore[union-attr]
        self.process.stdout.close()  # type: ignore[union-attr]
        self.process.wait()


@contextmanager
def worker_processes(orders: Iterable[tuple[Any, ...]]) -> Iterator[list[WorkerProcess]]:
    """A worker a (job, *args) of `orders`, each stopped when the block ends:
    let finish when it ends normally, killed when it ends by an exception
    (its parent's generator closed early included)."""
    pool: list[WorkerProcess] = []
    try:
        pool.extend(WorkerProcess(*order) for order in orders)
        yield pool
    except BaseException:
        for worker in pool:
            worker.stop(at_once=True)
        raise
    for worker in pool:
        worker.stop(at_once=False)
