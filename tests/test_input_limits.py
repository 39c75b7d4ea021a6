"""Any input in bounded memory and linear time (issue 29): a line beyond
MAX_LINE_BYTES is rejected at its line as too_long, unread, and the rest of
the file loads; a quoted field over many lines is scanned once, and one
still open after MAX_RECORD_CHARS is broken; a gzip file that expands like
a compression bomb is refused whole. The reader's memory is measured by
tracemalloc and its time by the characters its patterns scan, not by a
clock."""

from __future__ import annotations

import gzip
import io
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import AUTH, employee, ingest, load_reference_rows

from dataarch.csvrecords import (
    CHUNK,
    GZIP_RATIO_FROM,
    MAX_LINE_BYTES,
    MAX_RECORD_CHARS,
    SHOWN_BYTES,
    CsvError,
    Reader,
)
from dataarch.migrate import MigrationError, migrate_file

GOOD = b"%d,Someone,2021-07-27T16:02:08Z,1,1\n"


def lines_around(huge: int, before: int = 1000, after: int = 10) -> Iterator[bytes]:
    """`before` good lines, one line of `huge` bytes (a single field), then
    `after` good lines, a megabyte at a time: no buffer holds the whole."""
    yield b"".join(GOOD % n for n in range(1, before + 1))
    left = huge
    while left:
        part = min(left, CHUNK)
        yield b"9" * part
        left -= part
    yield b"\n" + b"".join(GOOD % n for n in range(before + 1, before + after + 1))


@pytest.mark.parametrize("huge", [MAX_LINE_BYTES + 1, 50 << 20])
def test_a_huge_line_is_one_rejection_read_past_in_bounded_memory(huge) -> None:
    tracemalloc.start()
    try:
        records = list(Reader(lines_around(huge)).records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * CHUNK + 2 * MAX_LINE_BYTES, f"{peak >> 20} MB held for a {huge >> 20} MB line"
    assert len(records) == 1011
    broken = records[1000]
    assert broken.line == 1001 and broken.fields is None
    assert len(broken.raw) <= SHOWN_BYTES + 3 and f"{huge:,} bytes" in broken.problem
    assert [r.line for r in records[1001:]] == list(range(1002, 1012))
    assert all(r.fields is not None for r in records[:1000] + records[1001:])


class CountingPattern:
    """A compiled pattern that counts the characters its matches take."""

    def __init__(self, pattern: re.Pattern) -> None:
        self.pattern, self.scanned = pattern, 0

    def match(self, text: str, pos: int = 0) -> re.Match | None:
        found = self.pattern.match(text, pos)
        self.scanned += found.end() - pos if found else 0
        return found


def scanning(reader: Reader) -> list[CountingPattern]:
    """The reader's record patterns, counting from now."""
    counters = []
    for name in ("quoted", "plain"):
        counters.append(CountingPattern(getattr(reader.parser, name)))
        setattr(reader.parser, name, counters[-1])
    return counters


@pytest.mark.parametrize("line", ["", "x", 'a""b'], ids=["empty", "short", "doubled-quotes"])
def test_a_quoted_field_over_many_lines_is_scanned_once(line: str) -> None:
    """Each line of an open quoted field goes on from where the last one
    stopped: reading the record again from its start at every line cost
    time quadratic in its lines (16 000 empty lines took 3.1 s, the 65 536
    the limit allows ~50 s, for 65 KB)."""
    lines = MAX_RECORD_CHARS // (len(line) + 1) - 100  # within the limit
    value = "\n".join([line] * lines)
    data = f'1,"{value}",2021-07-27T16:02:08Z,1,1\n2,b,2021-07-27T16:02:08Z,1,1\n'
    reader = Reader(io.BytesIO(data.encode()))
    counters = scanning(reader)
    records = list(reader.records())
    assert [(r.line, r.lines) for r in records] == [(1, lines), (lines + 1, 1)]
    assert records[0].fields == ("1", value.replace('""', '"'), "2021-07-27T16:02:08Z", "1", "1")
    assert sum(c.scanned for c in counters) <= len(data)


def test_a_quoted_field_open_past_the_limit_is_broken_and_its_lines_read_again() -> None:
    """One rejection at the line that opened it; the lines it would have
    taken are records again (here: one good line, then blank lines)."""
    filler = ["3,c,2021-07-27T16:02:08Z,1,1"] + [""] * MAX_RECORD_CHARS
    data = "\n".join(['1,"never closed', *filler, "2,b,2021-07-27T16:02:08Z,1,1", ""])
    reader = Reader(io.BytesIO(data.encode()))
    counters = scanning(reader)
    records = list(reader.records())
    assert [r.line for r in records] == [1, 2, len(filler) + 2]
    assert records[0].fields is None
    assert f"not closed within {MAX_RECORD_CHARS} characters" in records[0].problem
    assert [r.fields[0] for r in records[1:]] == ["3", "2"]
    assert sum(c.scanned for c in counters) <= 2 * len(data)


def test_a_migrated_file_rejects_its_huge_line_as_too_long_and_loads_the_rest(
    postgresql, tmp_path: Path
) -> None:
    load_reference_rows(postgresql)
    postgresql.commit()
    path = tmp_path / "hired_employees.csv"
    with path.open("wb") as f:
        f.writelines(lines_around(8 << 20))
    summary = migrate_file(postgresql, "employees", path)
    assert (summary["submitted"], summary["inserted"], summary["rejected"]) == (1011, 1010, 1)
    logged = postgresql.execute(
        "select line_number, reason_code, field, length(raw_line), message from ingest_errors"
    ).fetchall()
    assert len(logged) == 1
    line, reason, field, shown, message = logged[0]
    assert (line, reason, field) == (1001, "too_long", None) and shown <= SHOWN_BYTES + 3
    assert "8,388,608 bytes" in message and "rejected unread" in message


def test_a_gzip_bomb_is_refused_whole(postgresql, tmp_path: Path) -> None:
    path = tmp_path / "hired_employees.csv.gz"
    with gzip.open(path, "wb") as f:
        f.write(GOOD % 1)
        for _ in range((GZIP_RATIO_FROM >> 20) * 4):
            f.write(b"0" * CHUNK)  # one line of zeros, a thousand to one
    assert path.stat().st_size < 200_000
    with pytest.raises(MigrationError, match="expands .* times"):
        migrate_file(postgresql, "employees", path)
    postgresql.rollback()
    assert postgresql.execute("select count(*) from employees").fetchone()[0] == 0
    with pytest.raises(CsvError, match="compression bomb"), path.open("rb") as f:
        list(Reader(f).pieces())


def _scans_of_the_table(conn, table: str, rows: list[dict]) -> list[int]:
    """How many times each scan of `table` in the statements a batch of
    `rows` ran was repeated (auto_explain's analysed plans: `loops=`)."""
    logged: list[str] = []
    conn.add_notice_handler(lambda notice: logged.append(notice.message_primary or ""))
    conn.execute("load 'auto_explain'")
    for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = on"):
        conn.execute(f"set auto_explain.{setting}")
    conn.execute("set client_min_messages = log")
    summary = ingest(conn, table, rows)
    conn.execute("reset client_min_messages")
    conn.execute("reset auto_explain.log_min_duration")
    assert summary["inserted"] + summary["rejected"] == len(rows)
    scan = re.compile(rf"Scan (?:using \S+ )?on {table} \S+ .*?loops=(\d+)\)")
    return [int(loops) for text in logged for loops in scan.findall(text)]


@pytest.mark.parametrize("taken", [0, 300], ids=["none taken", "all taken"])
def test_a_batch_probes_the_ids_of_its_table_once_not_once_a_row(conn, taken: int) -> None:
    """The ids a batch's rows would take are looked up in the table by one
    index scan for all of them. Just after the table was emptied, its
    statistics made the planner probe once a row, each probe walking the
    batch's whole list of ids: 1000 x 1000 comparisons, 58 of a 70 ms batch."""
    load_reference_rows(conn)
    rows = [employee(i) for i in range(1, 301)]
    if taken:
        ingest(conn, "employees", rows[:taken])
    loops = _scans_of_the_table(conn, "employees", rows)
    assert loops and max(loops) == 1, loops
    count = conn.execute("select count(*) from employees").fetchone()[0]
    assert count == len(rows)


def test_an_upload_with_a_huge_line_loads_the_rest(server, conn) -> None:
    import httpx

    load_reference_rows(conn)
    body = b"".join(lines_around(4 << 20))
    answer = httpx.post(
        f"{server}/tables/employees/csv", content=body, timeout=120,
        headers={**AUTH, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert (summary["inserted"], summary["rejected"]) == (1010, 1)
    assert summary["by_reason"] == {"too_long": 1}
