"""Self-contained HTML reports of the two KPIs (Jinja2 templates, inline SVG).

    python -m reports [--year 2021] [--out DIR]

Pages: index.html, hires-by-quarter.html, departments-above-mean.html,
data-quality.html. They
load nothing from the network (a Content-Security-Policy forbids it), so a
file opened offline looks the same as the page the app serves at /reports/.
"""

from __future__ import annotations

__all__ = ["PAGES", "ReportData", "load_data", "render_login", "render_page", "write_reports"]


def __getattr__(name: str) -> object:
    # Imported on first use (PEP 562): Jinja2 costs every `dataarch` command
    # ~0.06 s at start-up, and only the report commands and the app need it.
    if name in __all__:
        from reports import render

        return getattr(render, name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
