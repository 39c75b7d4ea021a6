"""The error catalogue (dataarch/errors.py) knows every SQLSTATE the SQL raises."""

from __future__ import annotations

import re

import pytest
from conftest import PROJECT

from dataarch.errors import CATALOGUE, sqlstate

RAISED = sorted(
    {
        code
        for folder in ("schema", "procedures", "views")
        for path in (PROJECT / folder).glob("*.sql")
        for code in re.findall(r"errcode\s*=\s*'([0-9A-Z]{5})'", path.read_text())
    }
)


def test_the_sql_raises_project_codes() -> None:
    assert "DAT01" in RAISED and len(RAISED) >= 9


@pytest.mark.parametrize("code", RAISED)
def test_every_code_the_sql_raises_is_catalogued(code) -> None:
    assert code in {entry.code for entry in CATALOGUE}, f"add {code} to dataarch/errors.py"


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [("22003", 400, False), ("54001", 400, False), ("58P01", 503, True), ("XX000", 503, True),
     ("40P01", 503, True), ("DAT08", 409, True), (None, 503, True), ("42P01", 500, False)],
)  # fmt: skip
def test_exact_codes_then_classes(code, status, retry) -> None:
    entry = sqlstate(code)
    assert (entry.status, entry.retry) == (status, retry)
