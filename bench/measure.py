"""Timing helpers: medians of repetitions, and the peak memory of a command
with every process it starts."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss_kb(root: int) -> int:
    """Resident memory of `root` and every process under it, in KiB."""
    children: dict[int, list[int]] = {}
    rss_pages: dict[int, int] = {}
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
        rss_pages[pid] = int(fields[21])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss_pages.get(pid, 0)
        stack.extend(children.get(pid, ()))
    return total * _PAGE_KB


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
