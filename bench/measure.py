"""Timing helpers: medians of repetitions, and child processes' peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass


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


def p50_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak resident memory in MB) of that child alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.read().decode()[-500:]}")
    proc.returncode = 0
    return seconds, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
