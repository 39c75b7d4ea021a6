"""Chart geometry for the templates: horizontal bars as shares of a track,
in percent, so a chart is HTML laid out for the width it gets and its text
keeps its size at any width (an SVG scaled to a phone shrank it to 4 px)."""

from __future__ import annotations

import math
from dataclasses import dataclass

QUARTER_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1")
ABOVE, AT_OR_BELOW = "#e15759", "#9aa5b1"


def nice_ticks(maximum: float, count: int = 5) -> list[int]:
    """Round tick values (1, 2 or 5 times a power of ten) from 0 past `maximum`."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    return list(range(0, int(math.ceil(maximum / step) * step) + 1, step))


@dataclass(frozen=True)
class Segment:
    percent: float  # of the track
    colour: str
    name: str  # what it is, for its tooltip: "Q1"
    value: int


@dataclass(frozen=True)
class Row:
    label: str
    value: int
    segments: list[Segment]
    above: bool = False


@dataclass(frozen=True)
class BarChart:
    """One row a label: its bar (stacked segments) on a track whose full
    length stands for `scale`, and, when given, the mean as a tick."""

    rows: list[Row]
    scale: int
    mean: float | None = None

    @property
    def mean_percent(self) -> float:
        return 100 * (self.mean or 0) / self.scale


def _percent(value: float, scale: int) -> float:
    return round(100 * value / scale, 2)


def stacked_by_quarter(totals: list[tuple[str, list[int]]]) -> BarChart:
    """One bar a department, stacked by quarter."""
    scale = nice_ticks(max((sum(q) for _, q in totals), default=0))[-1]
    rows = [
        Row(
            label,
            sum(quarters),
            [
                Segment(_percent(v, scale), QUARTER_COLOURS[q], f"Q{q + 1}", v)
                for q, v in enumerate(quarters)
            ],
        )  # fmt: skip
        for label, quarters in totals
    ]
    return BarChart(rows, scale)


def bars_with_mean(values: list[tuple[str, int]], mean: float) -> BarChart:
    """One bar a department, coloured by whether it is above the mean."""
    scale = nice_ticks(max([v for _, v in values] + [mean], default=0))[-1]
    rows = [
        Row(
            label,
            v,
            [Segment(_percent(v, scale), ABOVE if v > mean else AT_OR_BELOW, "", v)],
            above=v > mean,
        )  # fmt: skip
        for label, v in values
    ]
    return BarChart(rows, scale, mean)
