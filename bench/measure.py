"""Timing helpers: medians of repetitions, and the peak memory of a command
with every process it starts."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")  # an item of work
C = TypeVar("C")  # a client: an HTTP client, a database session


@dataclass
class Rate:
    """rows/s as the median of repetitions."""

    rows: int
    seconds: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.median_s

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "seconds": [round(s, 4) for s in self.seconds],
            "rows_per_s": round(self.rows_per_s),
        }


def repeat(rows: int, reps: int, setup: Callable[[], None], run: Callable[[], None]) -> Rate:
    """Time `run` after `setup`, `reps` times."""
    seconds = []
    for _ in range(reps):
        setup()
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return Rate(rows, seconds)


def share_out(
    items: list[T], clients: int, open_client: Callable[[], AbstractContextManager[C]],
    work: Callable[[C, T], None],
) -> None:  # fmt: skip
    """`clients` threads, each with a client of its own, take the next item
    until none is left; the first failure is raised once all have stopped."""
    queue, lock, failures = iter(items), threading.Lock(), []

    def worker() -> None:
        with open_client() as client:
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                try:
                    work(client, item)
                except Exception as exc:  # raised in the caller's thread
                    failures.append(exc)
                    return

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[list[str]]:
    """/proc/PID/stat fields (after the name) of `root` and every process under it."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        stats[pid] = fields
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            found.append(stats[pid])
        stack.extend(children.get(pid, ()))
    return found


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and every process under it, in KiB."""
    return sum(int(fields[21]) for fields in _tree(root)) * _PAGE_KB


def cpu_seconds(root: int) -> float:
    """CPU time (user and system) of `root` and every process under it,
    those that ended included: a parent that reaps a child adds the child's
    time to its own (cutime, cstime), as a postmaster does for its backends."""
    return sum(sum(map(int, fields[11:15])) for fields in _tree(root)) / _TICKS


def threads_cpu_seconds(pid: int) -> float:
    """CPU time of process pid's live threads, to the nanosecond (schedstat):
    cpu_seconds counts in ticks of 10 ms, coarse for a few requests' worth;
    it is the answer on a kernel without schedstat."""
    if not Path(f"/proc/{pid}/schedstat").exists():
        return cpu_seconds(pid)
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # the thread just ended
            continue
    return total / 1e9


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak resident memory in MB of it and the
    processes it starts, such as backup workers, sampled every 0.1 s)."""
    seconds, peak_mb, returncode, errors = _watch(argv, env)
    if returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {errors}")
    return seconds, peak_mb


def run_refused(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """As run_child, for a command that must refuse its input (exit non-zero)."""
    seconds, peak_mb, returncode, _ = _watch(argv, env)
    if returncode == 0:
        raise RuntimeError(f"{' '.join(argv)} succeeded where it had to refuse its input")
    return seconds, peak_mb


def _watch(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds, peak MB, exit status, the end of its stderr) of one run."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak_kb = 0
        while proc.poll() is None:
            peak_kb = max(peak_kb, _tree_rss_kb(proc.pid))
            time.sleep(0.1)
        seconds = time.perf_counter() - start
        errors.seek(0)
        return seconds, peak_kb / 1024, proc.returncode, errors.read().decode()[-500:]


def reset_peak_rss(pid: int) -> None:
    """Start a process's peak resident memory (VmHWM) afresh (Linux)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory since it started or the last reset."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")
