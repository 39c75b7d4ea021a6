"""Chart geometry for the SVG in the templates: plain numbers, no markup."""

from __future__ import annotations

import math
from dataclasses import dataclass

QUARTER_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1")


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
    x: float
    width: float
    colour: str
    quarter: int
    value: int


@dataclass(frozen=True)
class StackedRow:
    label: str
    y: float
    total: int
    segments: list[Segment]


@dataclass(frozen=True)
class StackedChart:
    """Horizontal bars, one per department, stacked by quarter."""

    width: int
    height: int
    left: int
    top: int
    plot_width: int
    bar_height: int
    rows: list[StackedRow]
    ticks: list[tuple[float, int]]  # (x, value)


def stacked_by_quarter(totals: list[tuple[str, list[int]]]) -> StackedChart:
    left, top, plot_width, bar, gap = 230, 40, 560, 20, 8
    ticks = nice_ticks(max((sum(q) for _, q in totals), default=0))
    scale = plot_width / ticks[-1]
    rows = []
    for i, (label, quarters) in enumerate(totals):
        x, segments = float(left), []
        for q, value in enumerate(quarters):
            segments.append(Segment(x, value * scale, QUARTER_COLOURS[q], q + 1, value))
            x += value * scale
        rows.append(StackedRow(label, top + i * (bar + gap), sum(quarters), segments))
    height = top + len(totals) * (bar + gap) + 50
    return StackedChart(
        width=left + plot_width + 40,
        height=height,
        left=left,
        top=top,
        plot_width=plot_width,
        bar_height=bar,
        rows=rows,
        ticks=[(left + t * scale, t) for t in ticks],
    )


@dataclass(frozen=True)
class Bar:
    label: str
    x: float
    y: float
    width: float
    height: float
    value: int
    above: bool


@dataclass(frozen=True)
class MeanChart:
    """Vertical bars for every department, with the mean as a line."""

    width: int
    height: int
    left: int
    top: int
    plot_height: int
    bottom: float
    bars: list[Bar]
    mean: float
    mean_y: float
    ticks: list[tuple[float, int]]  # (y, value)


def bars_with_mean(values: list[tuple[str, int]], mean: float) -> MeanChart:
    left, top, plot_width, plot_height = 60, 30, 700, 300
    ticks = nice_ticks(max([v for _, v in values] + [mean], default=0))
    scale = plot_height / ticks[-1]
    bottom = top + plot_height
    slot = plot_width / max(len(values), 1)
    bars = [
        Bar(
            label,
            left + i * slot + slot * 0.15,
            bottom - v * scale,
            slot * 0.7,
            v * scale,
            v,
            v > mean,
        )
        for i, (label, v) in enumerate(values)
    ]
    return MeanChart(
        width=left + plot_width + 20,
        height=bottom + 150,
        left=left,
        top=top,
        plot_height=plot_height,
        bottom=bottom,
        bars=bars,
        mean=mean,
        mean_y=bottom - mean * scale,
        ticks=[(bottom - t * scale, t) for t in ticks],
    )
