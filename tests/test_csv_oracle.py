"""Oracle: records written by Python's csv.writer read back the same way on
every path. `migrate` (the file, COPYed as pieces) and `ingest` (the same
file as the client reads it, through the JSON entry point the API calls)
give the same outcome for every record: inserted exactly as written, or one
rejection with the same reason; and the counts account for every line."""

from __future__ import annotations

import csv
import io
import itertools
import json

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataarch.client import record_rows
from dataarch.csvrecords import Reader
from dataarch.migrate import migrate_file

NAMES = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(alphabet='",\r\n \t\x00\x01\x02\\.;', min_size=1, max_size=8),
    st.sampled_from(
        [
            "\\.",
            'O\'Brien, "Ty"',
            "שלום עולם",
            "مرحبا",
            "e\u0301",
            "\ufeffx",
            "a\r\nb",
            "a\r\nb\r\nc",
            "\r",
            "x" * 201,
            "   ",
            "Zoë",
        ]
    ),  # fmt: skip
)
RECORDS = st.lists(
    st.one_of(
        st.builds(lambda name: ["ID", name], NAMES),  # an id is given below
        st.builds(lambda name: ["ID", name, "surplus"], NAMES),
        st.just(["ID"]),
    ),
    min_size=1,
    max_size=12,
)
_run = itertools.count(1)


def _outcomes(conn: psycopg.Connection, table: str, batch_ids: list[int]) -> list[tuple]:
    return conn.execute(
        "select coalesce(line_number, row_index + 1), reason_code from ingest_errors"
        " where batch_id = any(%s) order by 1",
        (batch_ids,),
    ).fetchall()


@settings(
    max_examples=150, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(
    records=RECORDS,
    ending=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    end_marker_at=st.none() | st.integers(0, 12),
)
# found on fresh clones (issue 23): a CR inside a quoted field was dropped
@example(records=[["ID", "0\n\r\n0"]], ending="\n", bom=False, end_marker_at=None)
@example(records=[["ID", "a\r\nb\r\nc"]], ending="\r\n", bom=False, end_marker_at=None)
def test_migrate_and_ingest_agree_on_every_record(
    conn: psycopg.Connection, tmp_path_factory, records, ending, bom, end_marker_at
) -> None:
    run = next(_run)
    records = [["ID", "Anchor"], *records]  # a file with no record of the table is refused whole
    for n, record in enumerate(records):
        record[0] = str(run * 100 + n)
    written = []
    for record in records:
        out = io.StringIO()
        csv.writer(out, lineterminator=ending).writerow(record)
        written.append(out.getvalue())
    if end_marker_at is not None:  # a line COPY's text format would take for its end
        written.insert(min(end_marker_at, len(written)), "\\." + ending)
    text = "".join(written)
    data = ("\ufeff" if bom else "").encode() + text.encode()
    path = tmp_path_factory.mktemp("oracle") / f"departments-{run}.csv"
    path.write_bytes(data)

    # migrate: the file into departments
    summary = migrate_file(conn, "departments", path)
    physical = data.count(b"\n") + (not data.endswith(b"\n"))
    assert summary["lines"] == physical
    assert summary["header"] + summary["blank"] + summary["records"] <= physical
    migrated = _outcomes(conn, "departments", [summary["batch_id"]])

    # ingest: the same records, as the client sends them, into jobs (same rules)
    reader = Reader(io.BytesIO(data))
    rows = list(record_rows(reader))
    starts = [r.line for r in Reader(io.BytesIO(data)).records()]
    result = conn.execute(
        "select ingest_batch_json('jobs', %s, 'per_row', 'api')", (json.dumps(rows),)
    ).fetchone()[0]
    ingested = [(starts[r["index"]], r["reason_code"]) for r in result["rejections"]]
    assert result["submitted"] == summary["submitted"] == len(starts)
    assert ingested == migrated

    # what was inserted is exactly what was written (names are stored trimmed)
    names = {int(r[0]): r[1] for r in records if len(r) == 2}
    stored = dict(conn.execute(
        "select department_id, department_name from departments where department_id / 100 = %s",
        (run,),
    ).fetchall())  # fmt: skip
    jobs = dict(conn.execute(
        "select job_id, job_name from jobs where job_id / 100 = %s", (run,)
    ).fetchall())  # fmt: skip
    assert stored == jobs and len(stored) == summary["inserted"]
    for key, name in stored.items():
        assert names[key].strip(" \t\r\n") == name, (key, name)
