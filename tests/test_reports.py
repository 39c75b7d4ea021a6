"""The HTML reports in a real browser (Debian's Chromium through Playwright):
from files and from the running app, offline, escaped, and readable."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from conftest import (
    AUTH,
    PROJECT,
    SEED_DATA,
    cli_env,
    employee,
    ingest,
    requires_seed_data,
    start_server,
)
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from dataarch.migrate import find_files, migrate_file
from reports import PAGES, write_reports

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def db(conn: psycopg.Connection) -> psycopg.Connection:
    names = ["Sales", "Legal", EVIL, 'Quote "Q" & <b>bold</b>']
    ingest(conn, "departments", [
        {"department_id": i, "department_name": n} for i, n in enumerate(names, 1)
    ])  # fmt: skip
    ingest(conn, "jobs", [{"job_id": i, "job_name": f"Job {i}"} for i in range(1, 6)])
    ingest(conn, "employees", [
        employee(i, hiring_date=f"2021-{1 + i % 12:02d}-15T10:00:00Z", department_id=1 + i % 4,
                 job_id=1 + i % 5)
        for i in range(1, 400)
    ])  # fmt: skip
    ingest(conn, "employees", [employee(1), employee(900, employee_name=""), {"x": 1}])
    return conn


class Visit:
    """What a page did while it loaded: console errors, requests, dialogs."""

    def __init__(self, page: Page, url: str) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.goto(url)
        page.wait_for_load_state("load")
        self.screenshot = Image.open(io.BytesIO(page.screenshot(full_page=True)))


def check_page(page: Page, visit: Visit, url: str) -> None:
    assert visit.errors == []
    assert visit.dialogs == []
    assert [u for u in visit.requests if u.split("?")[0] != url.split("?")[0]] == []
    colours = visit.screenshot.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # not a blank page
    assert page.locator("header h1").inner_text()


def check_charts(page: Page, name: str, departments: int) -> None:
    if name == "hires-by-quarter":
        assert page.locator("#chart g.bar").count() == departments
        assert page.locator("#chart rect").count() == departments * 4
        assert "Employees hired in 2021" in page.locator("#chart").text_content()
    elif name == "departments-above-mean":
        assert page.locator("#chart g.bar").count() == departments
        assert page.locator("#mean-line").count() == 1
        assert page.locator("#chart g.bar.above").count() == page.locator("tr.above").count() > 0
    elif name == "data-quality":
        assert page.locator("#rejected-total").inner_text() == "3"
        assert page.locator("#by-reason tbody tr").count() == 3
        assert page.locator("#oldest-open tbody tr").count() == 3


def test_pages_from_files(browser, db, tmp_path) -> None:
    paths = write_reports(db, 2021, tmp_path)
    assert {p.name for p in paths} == {f"{name}.html" for name in PAGES}
    for path in paths:
        page = browser.new_page()
        url = path.as_uri()
        visit = Visit(page, url)
        check_page(page, visit, url)
        check_charts(page, path.stem, departments=4)
        if path.stem not in ("index", "data-quality"):  # a name is text, never a script
            assert EVIL in page.locator("body").text_content()
            own_scripts = 1 if path.stem == "hires-by-quarter" else 0
            assert page.locator("script").count() == own_scripts
        page.screenshot(path=tmp_path / f"{path.stem}.png")
        page.close()


def test_filter_by_department(browser, db, tmp_path) -> None:
    write_reports(db, 2021, tmp_path)
    page = browser.new_page()
    page.goto((tmp_path / "hires-by-quarter.html").as_uri())
    everything = page.locator("#kpi-table tbody tr:visible").count()
    page.select_option("#department-filter", label=EVIL)
    legal = page.locator("#kpi-table tbody tr:visible")
    assert 0 < legal.count() < everything
    assert {legal.nth(i).get_attribute("data-department") for i in range(legal.count())} == {EVIL}
    assert page.locator("#shown").inner_text() == str(legal.count())
    page.close()


def test_pages_from_the_running_app(browser, db, dsn) -> None:
    proc, base = start_server(dsn)
    try:
        context = browser.new_context(extra_http_headers=AUTH)
        for name in PAGES:
            page = context.new_page()
            url = f"{base}/reports/" if name == "index" else f"{base}/reports/{name}.html"
            visit = Visit(page, url + "?year=2021")
            check_page(page, visit, url)
            check_charts(page, name, departments=4)
            page.close()
        anonymous = browser.new_page()
        assert anonymous.goto(f"{base}/reports/").status == 401
        assert context.new_page().goto(f"{base}/reports/nope.html").status == 404
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@requires_seed_data()
def test_the_real_data_report_is_small_and_complete(browser, postgresql, tmp_path) -> None:
    for table, path in find_files(SEED_DATA / "globant"):
        migrate_file(postgresql, table, path)
    postgresql.commit()
    paths = {p.stem: p for p in write_reports(postgresql, 2021, tmp_path)}
    assert all(p.stat().st_size < 1_000_000 for p in paths.values())
    page = browser.new_page()
    page.goto(paths["hires-by-quarter"].as_uri())
    assert page.locator("#kpi-table tbody tr").count() == 933
    assert page.locator("#total-hires").inner_text() == "1643"
    page.close()


def test_report_command_writes_the_pages(db, dsn, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dataarch.cli", "report", "--year", "2021", "--out", str(tmp_path)],
        env=cli_env(dsn), cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.html")) == sorted(f"{n}.html" for n in PAGES)
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in (tmp_path / "hires-by-quarter.html").read_text()
    )


def test_the_data_quality_page_fits_a_phone(browser, db, tmp_path) -> None:
    write_reports(db, 2021, tmp_path)
    page = browser.new_page(viewport={"width": 400, "height": 800})
    page.goto((tmp_path / "data-quality.html").as_uri())
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    assert page.locator("#open-total").inner_text() == "3"
    page.close()
