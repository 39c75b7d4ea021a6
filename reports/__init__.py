"""Self-contained HTML reports of the two KPIs (Jinja2 templates, inline SVG).

    python -m reports [--year 2021] [--out DIR]

Pages: index.html, hires-by-quarter.html, departments-above-mean.html. They
load nothing from the network (a Content-Security-Policy forbids it), so a
file opened offline looks the same as the page the app serves at /reports/.
"""

from reports.render import PAGES, ReportData, load_data, render_page, write_reports

__all__ = ["PAGES", "ReportData", "load_data", "render_page", "write_reports"]
