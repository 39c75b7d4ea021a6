"""The HTML reports in a real browser (Debian's Chromium through Playwright):
from files and from the running app, offline, escaped, and readable."""

from __future__ import annotations

import io
import re
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

from dataarch.dictionary import read as read_dictionary
from dataarch.migrate import find_files, migrate_file
from reports import PAGES, write_reports

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# KPI 1 of the challenge data (933 department and job pairs of 2021),
# printed on A4 with 14 x 12 mm margins
PRINTED_KPI1_PAGES = 14
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
        assert page.locator("#chart .bar").count() == departments
        assert page.locator("#chart .seg").count() == departments * 4
        assert "Employees hired in 2021" in page.locator("#chart").text_content()
    elif name == "departments-above-mean":
        assert page.locator("#chart .bar").count() == departments
        assert page.locator("#mean-line").count() == 1
        assert page.locator("#chart .mean-tick").count() == departments
        assert page.locator("#chart .bar.above").count() == page.locator("tr.above").count() > 0
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


def test_departments_open_and_filter(browser, db, tmp_path) -> None:
    """KPI 1 is grouped: a subtotal a department, its jobs under it, closed
    at first; the filter shows one department, opened."""
    write_reports(db, 2021, tmp_path)
    page = browser.new_page()
    page.goto((tmp_path / "hires-by-quarter.html").as_uri())
    assert page.locator("#kpi-table tr.department:visible").count() == 4
    assert page.locator("#kpi-table tr.job:visible").count() == 0
    first = page.locator("#kpi-table tr.department").first
    first.locator("button").click()
    opened = page.locator("#kpi-table tr.job:visible")
    assert opened.count() > 0 and first.locator("button").get_attribute("aria-expanded") == "true"
    subtotal = int(first.locator("td.n").last.inner_text())
    assert subtotal == sum(int(opened.nth(i).locator("td.n").last.inner_text())
                           for i in range(opened.count()))  # fmt: skip
    page.select_option("#department-filter", label=EVIL)
    evil = page.locator("#kpi-table tr.job:visible")
    assert evil.count() > 0
    assert {evil.nth(i).get_attribute("data-department") for i in range(evil.count())} == {EVIL}
    assert page.locator("#kpi-table tr.department:visible").count() == 1
    assert page.locator("#shown").inner_text() == str(evil.count())
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
        assert context.new_page().goto(f"{base}/reports/nope.html").status == 404
        context.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


VIEWER = "viewer-token-for-tests"


@pytest.fixture
def served(db, dsn) -> Iterator[str]:
    ingest(db, "employees", [employee(2000, hiring_date="2022-05-01T00:00:00Z")])  # a 2nd year
    proc, base = start_server(dsn, DATAARCH_VIEWER_TOKEN=VIEWER)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def sign_in(browser: Browser, base: str, **context: object) -> Page:
    """A stakeholder's browser: sent to the sign-in page, signs in with the viewer token."""
    page = browser.new_context(**context).new_page()
    page.goto(f"{base}/reports/hires-by-quarter.html?year=2021")
    assert page.url.startswith(f"{base}/login?next=")
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    # the click only starts the navigation: wait for the page that says so
    # (counting at once raced the new page's load, once in a CI run)
    page.wait_for_url("**/login?failed=true*")
    page.locator("#failed").wait_for(state="attached")
    assert page.locator("#failed").count() == 1
    page.fill("#token", VIEWER)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/reports/hires-by-quarter.html?year=2021")
    return page


def test_a_stakeholder_signs_in_and_can_only_look(browser, served) -> None:
    page = sign_in(browser, served)
    cookie = page.context.cookies()[0]
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "dataarch_session",
        True,
        "Strict",
    )
    assert page.locator("#chart .bar").count() == 4
    kpi = page.context.request.get(f"{served}/kpis/hires-by-quarter?year=2021&format=csv")
    assert kpi.status == 200 and kpi.text().startswith("department_id,department")
    # the cookie opens the pages and the KPIs, nothing else
    assert page.context.request.get(f"{served}/tables/jobs/rows/1").status == 403
    write = page.context.request.post(f"{served}/tables/jobs/rows", data="[]",
                                      headers={"Content-Type": "application/json"})  # fmt: skip
    assert write.status == 403
    # the year selector reloads the page for another year
    page.select_option("#year", "2022")
    page.click("form[method=get] button")
    page.wait_for_url("**year=2022*")
    assert "Hires of 2022" in page.locator("header").inner_text()
    # a CSV download of what the page shows
    with page.expect_download() as download:
        page.click("#csv")
    assert download.value.suggested_filename == "hires-by-quarter-2022.csv"
    page.click("text=Sign out")
    page.wait_for_url(f"{served}/login*")
    assert page.context.request.get(f"{served}/kpis/hires-by-quarter").status == 401


@pytest.mark.parametrize("width", [1280, 400])
def test_pages_fit_the_screen_without_sideways_scrolling(browser, served, width) -> None:
    page = sign_in(browser, served, viewport={"width": width, "height": 900})
    for name in PAGES:
        page.goto(f"{served}/reports/{name}.html?year=2021")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        if name in ("hires-by-quarter", "departments-above-mean"):
            chart = page.locator("#chart").bounding_box()
            assert chart["x"] >= 0 and chart["x"] + chart["width"] <= width
        if name == "hires-by-quarter":  # every bar and every column, not only Q1 and 5 bars
            table = page.locator("#kpi-table").bounding_box()
            assert table["x"] + table["width"] <= width
            assert page.locator("#kpi-table th").last.is_visible()


def test_pages_print_on_a4(browser, served) -> None:
    page = sign_in(browser, served, viewport={"width": 794, "height": 1123})  # A4 at 96 dpi
    page.emulate_media(media="print")
    for name in ("hires-by-quarter", "departments-above-mean"):
        page.goto(f"{served}/reports/{name}.html?year=2021")
        assert page.evaluate("document.documentElement.scrollWidth") <= 794
        chart = page.locator("#chart").bounding_box()
        assert chart["x"] + chart["width"] <= 794
        assert not page.locator("header nav").is_visible()
        assert page.pdf(format="A4")  # Chromium lays it out as it prints


@requires_seed_data()
def test_the_real_data_report_is_small_and_complete(browser, postgresql, tmp_path) -> None:
    for table, path in find_files(read_dictionary(postgresql), SEED_DATA / "globant"):
        migrate_file(postgresql, table, path)
    postgresql.commit()
    paths = {p.stem: p for p in write_reports(postgresql, 2021, tmp_path)}
    assert all(p.stat().st_size < 1_000_000 for p in paths.values())
    page = browser.new_page()
    page.goto(paths["hires-by-quarter"].as_uri())
    assert page.locator("#kpi-table tbody tr.job").count() == 933
    assert page.locator("#kpi-table tbody tr.department").count() == 12
    assert page.locator("#total-hires").inner_text() == "1643"
    # printed on A4 with margins, every row, headers repeated, no row split
    page.emulate_media(media="print")
    assert page.locator("#kpi-table tr.job:visible").count() == 933
    pdf = page.pdf(format="A4", prefer_css_page_size=True)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages == PRINTED_KPI1_PAGES, pages
    page.close()


def test_report_command_writes_the_pages(db, dsn, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "report", "--year", "2021", "--out", str(tmp_path)],
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


# What a page must be at 400 px (a phone) and printed: no text under 11 px,
# none outside the section it belongs to (clipped, or off to the side), and
# no number, id or code broken in the middle.
LAYOUT = r"""() => {
  const found = {small: [], outside: [], broken: []};
  const walker = document.createTreeWalker(document.querySelector("main"), NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.trim(), el = node.parentElement;
    const range = document.createRange(); range.selectNodeContents(node);
    const rects = Array.from(range.getClientRects()).filter(r => r.width > 0);
    if (!text || rects.length === 0) continue;
    // its size as drawn: a scaled picture (an SVG shrunk to a phone) keeps
    // its CSS font-size but draws its glyphs smaller
    if (parseFloat(getComputedStyle(el).fontSize) < 11 || rects.some(r => r.height < 11))
      found.small.push(text.slice(0, 30));
    const section = el.closest("section");
    if (section) {
      const s = section.getBoundingClientRect();
      if (rects.some(r => r.left < s.left - 1 || r.right > s.right + 1))
        found.outside.push(text.slice(0, 30));
    }
    // a number, an id, a code or a header word: one line, never two
    if (/^[0-9A-Za-z#.,:_-]+$/.test(text) && new Set(rects.map(r => Math.round(r.top))).size > 1)
      found.broken.push(text.slice(0, 30));
  }
  return found;
}"""


@pytest.mark.parametrize("width", [400, 1280])
def test_every_label_is_readable_and_whole(browser, served, width) -> None:
    page = sign_in(browser, served, viewport={"width": width, "height": 900})
    for name in PAGES:
        page.goto(f"{served}/reports/{name}?year=2021")  # .html is optional
        if name == "hires-by-quarter":
            page.locator("#kpi-table tr.department button").first.click()
        found = page.evaluate(LAYOUT)
        assert found == {"small": [], "outside": [], "broken": []}, (name, width, found)


def test_each_page_says_what_it_shows(browser, served) -> None:
    page = sign_in(browser, served)
    for name, said in [("hires-by-quarter", "Hires of 2021"), ("data-quality", "all years")]:
        page.goto(f"{served}/reports/{name}.html?year=2021")
        assert said in page.locator("#scope").inner_text()


def test_a_year_without_hires_writes_no_report(db, dsn, tmp_path) -> None:
    (tmp_path / "index.html").write_text("kept")
    done = subprocess.run(
        [sys.executable, "-m", "cli", "report", "--year", "1800", "--out", str(tmp_path)],
        env=cli_env(dsn), cwd=PROJECT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "no hires in 1800" in done.stderr and "2021" in done.stderr
    assert (tmp_path / "index.html").read_text() == "kept"
