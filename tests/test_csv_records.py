"""What a CSV record is, without a database: every line-ending combination
inside and outside quoted fields. Inside quotes every byte is data (CR, LF,
CRLF, a lone CR and any mix); outside, only the record's own line ending
(LF, or CRLF) is taken off. Fed whole and in chunks that cut the file at
every line feed, so a quoted field that spans the reader's chunks is read
the same as one inside a chunk."""

from __future__ import annotations

import io
import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dataarch.csvrecords import Parser, Reader

INSIDE = ["\n", "\r\n", "\r", "\n\r\n", "\r\r\n", "\n\r", "\r\n\r\n", "\r\n\n\r", "\r\r"]
ENDINGS = ["\n", "\r\n", ""]  # "": the last record has no line ending


def _records(data: bytes, chunks: bool) -> list[tuple[int, tuple[str | None, ...] | None]]:
    """(first line, fields) of every record; with chunks, the bytes arrive cut
    after every line feed, so each line is a chunk of its own."""
    source: io.BytesIO | list[bytes] = io.BytesIO(data)
    if chunks:
        source = [line for line in data.splitlines(keepends=True)]
    return [(r.line, r.fields) for r in Reader(source).records()]


@pytest.mark.parametrize("chunks", [False, True], ids=["whole", "chunked"])
@pytest.mark.parametrize(("inside", "ending"), list(itertools.product(INSIDE, ENDINGS)))
def test_a_quoted_field_keeps_every_line_break_byte(inside: str, ending: str, chunks: bool) -> None:
    value = f"a{inside}b{inside}c"
    data = f'1,plain\r\n2,"{value}"{ending}'.encode()
    if ending:
        data += b"3,after\n"
    expected = [(1, ("1", "plain")), (2, ("2", value))]
    if ending:
        expected.append((2 + value.count("\n") + 1, ("3", "after")))
    assert _records(data, chunks) == expected


@pytest.mark.parametrize("chunks", [False, True], ids=["whole", "chunked"])
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # outside quotes: the CR of a CRLF ending goes; a CR before it is data
        (b"1,a\r\n2,b\n", [(1, ("1", "a")), (2, ("2", "b"))]),
        (b"1,a\r\r\n", [(1, ("1", "a\r"))]),
        (b"1,a\rb\n", [(1, ("1", "a\rb"))]),  # a lone CR does not end a record
        (b"1,a\r", [(1, ("1", "a"))]),  # the last line's CR is its ending
        (b"1,a\n\r\n2,b\n", [(1, ("1", "a")), (3, ("2", "b"))]),  # a CRLF blank line
        # the falsifying example of issue 23: ['29401', '0\n\r\n0'], LF endings
        (b'29401,"0\n\r\n0"\n', [(1, ("29401", "0\n\r\n0"))]),
        (b'1,"a\r\nb\r\nc"\r\n', [(1, ("1", "a\r\nb\r\nc"))]),
        # a quoted field whose last line holds only the closing quote
        (b'1,"a\r\n"\r\n2,b\n', [(1, ("1", "a\r\n")), (3, ("2", "b"))]),
        # a quoted empty value followed by a CR that belongs to the ending
        (b'1,""\r\n', [(1, ("1", ""))]),
    ],
)
def test_line_endings_outside_and_around_quotes(data: bytes, expected: list, chunks: bool) -> None:
    assert _records(data, chunks) == expected


@settings(max_examples=300)
@given(data=st.text(alphabet='",\r\nx', max_size=40), chunks=st.booleans())
@example(data='"\n\nx,x\n\r\n', chunks=False)  # blank lines after a field never closed
@example(data='""\r\r', chunks=False)  # a CR that is data, before the ending's: "bad"
def test_a_record_read_a_line_at_a_time_is_the_record_parsed_whole(data: str, chunks: bool) -> None:
    """The reader parses a record a line at a time (each character once);
    the verdict is the one the record's whole text gets. A blank line is
    never a record, even one read again after a broken record."""
    source: io.BytesIO | list[bytes] = io.BytesIO(data.encode())
    if chunks:
        source = data.encode().splitlines(keepends=True)
    parser = Parser(",")
    for piece in Reader(source).pieces():
        if not piece.record:
            continue
        assert piece.text, "a blank line became a record"
        if piece.problem and "is not closed" in piece.problem:
            continue  # broken by what follows it, not by its own text
        state, fields, problem = parser.parse(piece.text)
        assert (state, fields, problem) == ("bad" if problem else "ok", piece.fields, piece.problem)
