"""The database writes a backup's Avro records (procedures/055): for every
type backup/columns.py maps, nullable or not, each row's record is byte
for byte what fastavro writes for the same values, and a file made of the
database's blocks reads back as the rows, whichever way the table is read."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import fastavro
import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from backup.columns import TIMESTAMP, TYPES, avro_schema, table_columns
from backup.dump import COMPRESS, Part, _parts, _record, _values, _writer_args, encode

TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
VALUES = {
    "smallint": st.integers(-(2**15), 2**15 - 1),
    "integer": st.integers(-(2**31), 2**31 - 1),
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "text": TEXT,
    "character(5)": st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=5),
    "jsonb": JSON.map(Jsonb),
    "boolean": st.booleans(),
    TIMESTAMP: st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)).map(
        lambda d: d.replace(tzinfo=UTC)
    ),
}
# each type twice: NOT NULL, and nullable (a union with null in the file)
COLUMNS = [(f"{kind}_{n}", pg_type, nullable) for n, pg_type in enumerate(TYPES)
           for kind, nullable in (("required", False), ("optional", True))]  # fmt: skip
TABLE = "avro_types"


def test_every_mapped_type_has_values() -> None:
    assert set(VALUES) == set(TYPES)


@st.composite
def rows(draw: st.DrawFn) -> list[tuple]:
    count = draw(st.integers(1, 30))
    return [
        tuple(
            None if nullable and draw(st.booleans()) else draw(VALUES[pg_type])
            for _, pg_type, nullable in COLUMNS
        )
        for _ in range(count)
    ]


def _create(conn: psycopg.Connection) -> None:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(name), sql.SQL(pg_type), sql.SQL("" if nullable else " not null")
        )
        for name, pg_type, nullable in COLUMNS
    )
    conn.execute(sql.SQL("create table {} ({})").format(sql.Identifier(TABLE), columns))


def _fill(conn: psycopg.Connection, batch: list[tuple]) -> None:
    conn.execute(sql.SQL("truncate {}").format(sql.Identifier(TABLE)))
    with conn.cursor().copy(sql.SQL("copy {} from stdin").format(sql.Identifier(TABLE))) as copy:
        for row in batch:
            copy.write_row(row)


def _as_fastavro_gets_them(conn: psycopg.Connection) -> list[dict]:
    """The rows as plain reads return them, jsonb as its text: what a
    Python program would hand fastavro."""
    names = [
        sql.SQL("{}::text" if pg_type == "jsonb" else "{}").format(sql.Identifier(name))
        for name, pg_type, _ in COLUMNS
    ]
    query = sql.SQL("select {} from {} order by ctid").format(
        sql.SQL(", ").join(names), sql.Identifier(TABLE)
    )
    keys = [name for name, _, _ in COLUMNS]
    return [dict(zip(keys, r, strict=True)) for r in conn.execute(query).fetchall()]


@pytest.fixture
def typed(conn: psycopg.Connection) -> psycopg.Connection:
    _create(conn)
    conn.execute("set timezone = 'UTC'")
    return conn


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=rows())
@example(batch=[tuple(  # each type's extremes: the varint's widest and narrowest
    {"smallint": -(2**15), "integer": 2**31 - 1, "bigint": -(2**63), "text": "",
     "character(5)": "", "jsonb": Jsonb({}), "boolean": False,
     TIMESTAMP: datetime(1, 1, 1, tzinfo=UTC)}[t]
    for _, t, _ in COLUMNS)])  # fmt: skip
@example(batch=[tuple(
    {"smallint": 2**15 - 1, "integer": -(2**31), "bigint": 2**63 - 1, "text": "é" * 70,
     "character(5)": "abcde", "jsonb": Jsonb([1, "ü"]), "boolean": True,
     TIMESTAMP: datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)}[t]
    for _, t, _ in COLUMNS)])  # fmt: skip
def test_each_record_is_what_fastavro_writes(typed: psycopg.Connection, batch: list) -> None:
    _fill(typed, batch)
    columns = table_columns(typed, TABLE)
    part = Part(TABLE, tuple(columns), "null", b"", None, None)
    query = sql.SQL("select {} from (select {} from {} order by ctid offset 0) as r").format(
        _record(part), _values(part), sql.Identifier(TABLE)
    )
    ours = [bytes(r) for (r,) in typed.execute(query).fetchall()]
    schema = fastavro.parse_schema(avro_schema(TABLE, columns))
    theirs = []
    for record in _as_fastavro_gets_them(typed):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        theirs.append(out.getvalue())
    assert ours == theirs


@pytest.mark.parametrize("codec", list(COMPRESS))
@pytest.mark.parametrize("by_pages", [True, False])
def test_a_file_of_the_database_blocks_reads_back_as_the_rows(
    typed: psycopg.Connection, codec: str, by_pages: bool, monkeypatch
) -> None:
    """Parts of three pages (their last block of four pages cut short), or
    the whole table by rows as on Citus: every row once, in page order."""
    monkeypatch.setattr("backup.dump.PAGES_PER_PART", 3)
    _fill(typed, [
        tuple(None if nullable and i % 3 == 0 else _plain(pg_type, i)
              for _, pg_type, nullable in COLUMNS)
        for i in range(2000)
    ])  # fmt: skip
    columns = tuple(table_columns(typed, TABLE))
    template = Part(TABLE, columns, codec, os.urandom(16), 0, None)
    by_rows = Part(TABLE, columns, codec, template.sync_marker, None, None)
    parts = _parts(typed, TABLE, template) if by_pages else [by_rows]
    assert (len(parts) > 10) == by_pages
    out = io.BytesIO()
    fastavro.writer(out, records=[], **_writer_args(template))
    for part in parts:
        out.write(encode(typed, part))
    out.seek(0)
    assert list(fastavro.reader(out)) == _as_fastavro_gets_them(typed)


def _plain(pg_type: str, i: int) -> object:
    return {
        "smallint": i - 1000, "integer": i * 100_003 - 7, "bigint": i * 2**40 - 5,
        "text": f"name {i} ü", "character(5)": f"{i:04d}", "jsonb": Jsonb({"i": i}),
        "boolean": i % 2 == 0, TIMESTAMP: datetime(2021, 1, 1, tzinfo=UTC).replace(microsecond=i),
    }[pg_type]  # fmt: skip
