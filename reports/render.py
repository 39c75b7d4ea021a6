"""Read the KPIs from the database and render the report pages."""

from __future__ import annotations

import csv
import io
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from psycopg import sql
from psycopg.types.json import Jsonb

from dataarch.errors import Busy, busy_message
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


def _safe_source(source: str) -> Markup:
    """A batch's source ("csv:hired_employees.csv"), escaped, that may break
    after its colon on a narrow screen and nowhere else."""
    return Markup(":<wbr>").join(escape(part) for part in str(source).split(":"))


_ENV.filters["safe_source"] = _safe_source
KPI1_COLUMNS = ("department_id", "department", "job_id", "job", "Q1", "Q2", "Q3", "Q4")
KPI2_COLUMNS = ("id", "department", "hired")


@dataclass
class Group:
    """A department's rows of KPI 1 and their subtotals by quarter."""

    label: str
    quarters: list[int]
    rows: list[tuple]


@dataclass(frozen=True)
class ReportData:
    year: int
    as_of: datetime | None
    hires_by_quarter: list[tuple[int, str, int, str, int, int, int, int]]
    above_mean: list[tuple[int, str, int]]
    department_hires: list[tuple[int, str, int]]
    quality: dict  # data_quality(): rejections by reason, source, day; the oldest open
    years: list[int]  # the years with hires, for the live pages' year selector

    @property
    def mean(self) -> float:
        hires = [h for _, _, h in self.department_hires]
        return sum(hires) / len(hires) if hires else 0.0

    @property
    def quarter_totals(self) -> list[int]:
        return [sum(row[4 + q] for row in self.hires_by_quarter) for q in range(4)]

    def department_name(self, department_id: int, name: str) -> str:
        """The name, with the id when another department bears the same name."""
        return f"{name} (#{department_id})" if name in self._shared("department") else name

    def job_name(self, job_id: int, name: str) -> str:
        return f"{name} (#{job_id})" if name in self._shared("job") else name

    def _shared(self, kind: str) -> set[str]:
        index = 0 if kind == "department" else 2
        pairs = {(row[index], row[index + 1]) for row in self.hires_by_quarter}
        if kind == "department":
            pairs |= {(i, name) for i, name, _ in self.department_hires}
        return {name for name, n in Counter(name for _, name in pairs).items() if n > 1}

    def grouped_by_department(self) -> list[Group]:
        """KPI 1's rows under their department, in the KPI's order, each
        group with its quarters' subtotals."""
        groups: dict[str, Group] = {}
        for row in self.hires_by_quarter:
            label = self.department_name(row[0], row[1])
            group = groups.setdefault(label, Group(label, [0, 0, 0, 0], []))
            group.rows.append(row)
            group.quarters[:] = [a + b for a, b in zip(group.quarters, row[4:], strict=True)]
        return list(groups.values())

    def department_quarters(self) -> list[tuple[str, list[int]]]:
        """KPI 1 summed over jobs: one bar per department, in the KPI's order."""
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for department_id, department, _, _, *quarters in self.hires_by_quarter:
            label = self.department_name(department_id, department)
            totals[label] = [a + b for a, b in zip(totals[label], quarters, strict=True)]
        return list(totals.items())


# The tables of the one lock order (procedures/003) this role may read: a
# restore replaces them, truncating some, which a snapshot taken before it
# committed reads as empty.
_READABLE = (
    "select array(select t from unnest(_lock_order()) as t where has_table_privilege(t, 'select'))"
)


def load_data(conn: psycopg.Connection, year: int) -> ReportData:
    """Everything the pages show, read in one snapshot, taken once no
    restore holds what they read (waiting at most lock_timeout, then Busy
    naming who holds it). conn: idle."""
    with conn.transaction():  # its own: the snapshot's must start with the locks
        tables = conn.execute(_READABLE).fetchone()[0]
    try:
        with conn.transaction():
            conn.execute("set transaction isolation level repeatable read, read only")
            # LOCK TABLE, unlike a query, takes no snapshot: the first read
            # takes it, once the locks are held (ACCESS SHARE waits only for
            # ACCESS EXCLUSIVE, which a restore takes all or none)
            conn.execute(sql.SQL("lock table {} in access share mode").format(
                sql.SQL(", ").join(map(sql.Identifier, tables))))  # fmt: skip
            return _read(conn, year)
    except psycopg.errors.LockNotAvailable as exc:
        raise _busy(conn, tables) from exc


def _read(conn: psycopg.Connection, year: int) -> ReportData:
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
    years = [y for (y,) in conn.execute(
        "select distinct hire_year from hire_counts where hires > 0 order by 1")]  # fmt: skip
    return ReportData(year, as_of, kpi1, kpi2, every, quality, years)


def _busy(conn: psycopg.Connection, tables: list[str]) -> Busy:
    """The wait for `tables` ran out: the first of them still busy
    (_try_lock_tables, which waits for nothing) and who holds it."""
    modes = Jsonb(dict.fromkeys(tables, "access share"))
    with conn.transaction():  # its own, so that what it locks goes at once
        busy = conn.execute("select _try_lock_tables(%s)", (modes,)).fetchone()[0]
        holders = conn.execute("select lock_holders_of(%s)", ([busy] if busy else tables,))
        said = busy_message(busy or ", ".join(tables), holders.fetchone()[0])
    return Busy(f"{said}; no report was read: try again when it has finished")


def csv_link(columns: tuple[str, ...], rows: list[tuple]) -> str:
    """A data: URI of the rows as CSV, for a download link that needs no server."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return "data:text/csv;charset=utf-8," + quote(out.getvalue())


def render_page(name: str, data: ReportData, link_suffix: str = "", live: bool = False) -> str:
    """One page as HTML; link_suffix is appended to links between pages (e.g.
    ?year=); a live page (served by the app) has a year selector and a
    sign-out button."""
    context = {
        "data": data,
        "live": live,
        "link": lambda page: f"{page}.html{link_suffix}",
        "max_cell": max((max(r[4:]) for r in data.hires_by_quarter), default=0),
        "quarter_colours": charts.QUARTER_COLOURS,
    }
    if name == "hires-by-quarter":
        context["chart"] = charts.stacked_by_quarter(data.department_quarters())
        context["csv"] = csv_link(KPI1_COLUMNS, data.hires_by_quarter)
    if name == "departments-above-mean":
        labelled = [(data.department_name(i, d), h) for i, d, h in data.department_hires]
        context["chart"] = charts.bars_with_mean(labelled, data.mean)
        context["csv"] = csv_link(KPI2_COLUMNS, data.above_mean)
    return _ENV.get_template(PAGES[name]).render(context)


def render_login(next_page: str, failed: bool) -> str:
    """The sign-in page a browser is sent to without credentials."""
    return _ENV.get_template("login.html.j2").render(next_page=next_page, failed=failed)


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
