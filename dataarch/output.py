"""What people see on a terminal: one status line or progress bar at a time,
on stderr, redrawn in place and erased when done, and nothing at all when
stderr is not a terminal (the logs say what happened there). Log lines
never reach a terminal's stderr while a status line is shown (see
dataarch/logs.py), so the two never overwrite each other."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Status:
    """A line that each update replaces; `bar` draws done/total as a bar."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self._last = 0.0
        self._step = ""  # the first word of the text shown last

    def __call__(self, text: str) -> None:
        self.show(text)

    def show(self, text: str, force: bool = False) -> None:
        """Draw text, unless it only updates the step shown less than 0.1 s
        ago (ten redraws a second are plenty); a new step (its first word
        differs) is drawn at once, since nothing may come after it for a
        while."""
        now = time.monotonic()
        step = text.split(" ", 1)[0]
        if not self.live or (not force and step == self._step and now - self._last < 0.1):
            return
        self._last, self._step = now, step
        width = shutil.get_terminal_size((80, 20)).columns - 1
        self.stream.write(f"\r\033[K{f'{self.label}: {text}'[:width]}")
        self.stream.flush()

    def bar(self, done: float, total: float, unit: str = "MB", scale: float = 1e6) -> None:
        share = min(done / total, 1.0) if total else 1.0
        filled = int(30 * share)
        self.show(f"[{'#' * filled}{'.' * (30 - filled)}] {done / scale:.1f}/{total / scale:.1f}"
                  f" {unit}", force=share >= 1.0)  # fmt: skip

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


@contextmanager
def status(label: str) -> Iterator[Status]:
    """A status line for the duration of a block, erased at its end."""
    line = Status(label)
    try:
        yield line
    finally:
        line.clear()
