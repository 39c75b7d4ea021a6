"""Read the KPIs from the database and render the report pages."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape

from reports import charts

PAGES = {
    "index": "index.html.j2",
    "hires-by-quarter": "hires_by_quarter.html.j2",
    "departments-above-mean": "departments_above_mean.html.j2",
    "data-quality": "data_quality.html.j2",
}
_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class ReportData:
    year: int
    as_of: datetime | None
    hires_by_quarter: list[tuple[str, str, int, int, int, int]]
    above_mean: list[tuple[int, str, int]]
    department_hires: list[tuple[int, str, int]]
    quality: dict  # data_quality(): rejections by reason, source, day; the oldest open

    @property
    def mean(self) -> float:
        hires = [h for _, _, h in self.department_hires]
        return sum(hires) / len(hires) if hires else 0.0

    @property
    def quarter_totals(self) -> list[int]:
        return [sum(row[2 + q] for row in self.hires_by_quarter) for q in range(4)]

    def department_quarters(self) -> list[tuple[str, list[int]]]:
        """KPI 1 summed over jobs: one bar per department, in the KPI's order."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for department, _, *quarters in self.hires_by_quarter:
            totals[department] = [a + b for a, b in zip(totals[department], quarters, strict=True)]
        return list(totals.items())


def load_data(conn: psycopg.Connection, year: int) -> ReportData:
    """Everything the pages show, read in one snapshot."""
    with conn.transaction():
        conn.execute("set transaction isolation level repeatable read, read only")
        as_of = conn.execute("select max(updated_at) from hire_counts").fetchone()[0]
        kpi1 = conn.execute("select * from kpi_hires_by_quarter(%s)", (year,)).fetchall()
        kpi2 = conn.execute("select * from kpi_departments_above_mean(%s)", (year,)).fetchall()
        every = conn.execute(
            "select d.department_id, d.department_name, coalesce(h.hired, 0)"
            " from departments as d left join department_hires as h"
            " on h.id = d.department_id and h.year = %s"
            ' order by 3 desc, d.department_name collate "C"',
            (year,),
        ).fetchall()
        quality = conn.execute("select data_quality()").fetchone()[0]
    return ReportData(year, as_of, kpi1, kpi2, every, quality)


def render_page(name: str, data: ReportData, link_suffix: str = "") -> str:
    """One page as HTML; link_suffix is appended to links between pages (e.g. ?year=)."""
    context = {
        "data": data,
        "link": lambda page: f"{page}.html{link_suffix}",
        "max_cell": max((max(r[2:]) for r in data.hires_by_quarter), default=0),
        "quarter_colours": charts.QUARTER_COLOURS,
    }
    if name == "hires-by-quarter":
        context["chart"] = charts.stacked_by_quarter(data.department_quarters())
    if name == "departments-above-mean":
        context["chart"] = charts.bars_with_mean(
            [(d, h) for _, d, h in data.department_hires], data.mean
        )
    return _ENV.get_template(PAGES[name]).render(context)


def write_reports(conn: psycopg.Connection, year: int, out_dir: Path) -> list[Path]:
    data = load_data(conn, year)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in PAGES:
        path = out_dir / f"{name}.html"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(render_page(name, data), encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written
