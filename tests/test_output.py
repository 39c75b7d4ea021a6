"""What a person sees on a terminal while a long command works."""

from __future__ import annotations

import io

from dataarch.output import Status


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_new_step_shows_at_once_however_soon_it_follows() -> None:
    """Updates of one step are drawn ten times a second at most; the next
    step is drawn at once. (A step that came within 0.1 s of the last drawn
    update was dropped: the last "reading ... MB" stayed on the screen for
    as long as the file was then judged, seconds for a million lines.)"""
    screen = Terminal()
    line = Status("hired_employees.csv", screen)
    for mb in range(1, 50):
        line(f"reading {mb}.0 of 48.7 MB")
    line("judging 1,000,000 lines in 2 sessions")
    shown = screen.getvalue().split("\r\033[K")
    assert shown[-1] == "hired_employees.csv: judging 1,000,000 lines in 2 sessions"
    assert len(shown) < 10  # the reading updates were thinned, not each drawn
