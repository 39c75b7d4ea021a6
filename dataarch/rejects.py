"""Reject files: the rejected rows of a table as a header-less CSV that can be
edited and sent again as it is (`TABLE.reject.csv`), and beside it a log
saying, for each of its records in order, where the row came from and why
it was rejected (`TABLE.reject.log`). pgloader writes the same pair.

A CSV record is written back as it was read; an API row as its values in
the table's column order (an absent or null value as an empty field, a
non-string value as its JSON text, a number as the digits received, however
many). A value that is not a row of the table (a string, a number, an
object with keys that are not columns, an array of the wrong length) is
never written as lines of the .csv, which would re-send what nobody
reviewed: it goes to the log only, as the JSON text received.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

LOG_HEADER = (
    "record", "batch_id", "source", "position", "reason_code", "field", "message", "received",
)  # fmt: skip


def received(text: str | None) -> Any:
    """A rejected row's JSON text as a value, each number kept as the text
    received (a number of 5000 digits is not an int Python converts)."""
    if text is None:
        return None
    return json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_Number)


def decode(text: str) -> Any:
    """JSON from the API: an integer Python can hold as an int, any other
    number as its text (rejected rows hold whatever was sent)."""
    return json.loads(text, parse_int=_integer, parse_float=_Number, parse_constant=_Number)


def _integer(text: str) -> int | str:
    return int(text) if len(text) <= 18 else _Number(text)


class _Number(str):
    """A JSON number, as its text."""


@dataclass(frozen=True)
class Rejected:
    """One row of rejected_records() (procedures/050), or of the API's listing."""

    batch_id: int
    source: str
    position: int
    raw_line: str | None
    raw_row: Any
    reason_code: str
    field: str | None
    message: str


def _field(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else _json(value)


def _json(value: Any) -> str:
    """JSON text, numbers as received."""
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def as_record(rejected: Rejected, columns: Sequence[str]) -> str | None:
    """The rejected row as one CSV record (with its line ending), or None
    when it is not a row of the table."""
    if rejected.raw_line is not None:
        return rejected.raw_line + "\n"
    row = rejected.raw_row
    if isinstance(row, dict) and set(row) <= set(columns):
        values = [row.get(c) for c in columns]
    elif isinstance(row, list) and len(row) == len(columns):
        values = row
    else:
        return None
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([_field(v) for v in values])
    return out.getvalue()


def reject_files(rows: Iterable[Rejected], columns: Sequence[str]) -> tuple[str, str, int]:
    """(the .reject.csv text, the .reject.log text, how many records the .csv holds)."""
    records, log = io.StringIO(), io.StringIO()
    writer = csv.writer(log, lineterminator="\n")
    writer.writerow(LOG_HEADER)
    count = 0
    for rejected in rows:
        record = as_record(rejected, columns)
        if record is not None:
            count += 1
            records.write(record)
        writer.writerow([
            count if record is not None else "", rejected.batch_id, rejected.source,
            rejected.position, rejected.reason_code, rejected.field or "", rejected.message,
            "" if record is not None else _json(rejected.raw_row),
        ])  # fmt: skip
    return records.getvalue(), log.getvalue(), count
