"""The input shapes the bench measures beside the normal file (issue 29):
the same lines with one huge field among them, with tiny lines between
them, records whose quoted field runs over thousands of lines, and a gzip
bomb. Each is written a megabyte at a time, so the bench itself stays
small."""

from __future__ import annotations

import gzip
from itertools import islice
from pathlib import Path

MB = 1 << 20


def first_lines(source: Path, out: Path, count: int) -> Path:
    """The first `count` lines of `source`, as `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as f, out.open("wb") as o:
        o.writelines(islice(f, count))
    return out


def line_count(path: Path) -> int:
    """The line feeds of `path`, read a megabyte at a time."""
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(MB), b""))


def with_huge_field(source: Path, out: Path, field_bytes: int) -> Path:
    """`source`'s lines with one more in the middle: a record whose name is a
    quoted field of `field_bytes` bytes (a line the reader rejects unread)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as f:
        lines = f.readlines()
    half = len(lines) // 2
    with out.open("wb") as o:
        o.writelines(lines[:half])
        o.write(b'999999999,"')
        for left in range(field_bytes, 0, -MB):
            o.write(b"x" * min(left, MB))
        o.write(b'",2021-01-01T00:00:00Z,1,1\n')
        o.writelines(lines[half:])
    return out


def with_tiny_lines(source: Path, out: Path, lines: int, tiny: int = 10) -> Path:
    """The first `lines` lines of `source`, each followed by `tiny` lines of
    one character (a record of one field: each is one rejection)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as f, out.open("wb") as o:
        for line in islice(f, lines):
            o.write(line + b"x\n" * tiny)
    return out


def deep_quoting(out: Path, size: int, lines: int = 20_000) -> Path:
    """About `size` bytes of records (at least one) whose quoted name runs
    over `lines` lines, each one doubled quote (""): a field of 60 kB, under
    the reader's 64 K characters, that cost time quadratic in its lines
    until each line went on from where the last stopped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    record = b'1,"' + b'""\n' * lines + b'",2021-01-01T00:00:00Z,1,1\n'
    with out.open("wb") as o:
        for _ in range(max(1, size // len(record))):
            o.write(record)
    return out


def gzip_bomb(out: Path, expanded_bytes: int) -> Path:
    """A gzip file of one line of zeros `expanded_bytes` long: it compresses
    about a thousand to one, where a CSV file compresses 5-20 times."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wb", compresslevel=6) as o:
        for left in range(expanded_bytes, 0, -MB):
            o.write(b"0" * min(left, MB))
    return out
