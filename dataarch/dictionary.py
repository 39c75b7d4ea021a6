"""The data dictionary, as the database declares it (`data_dictionary()`,
procedures/001_dictionary.sql): the HR tables in load order, the names
their CSV files go by, and their columns in CSV order. Python reads it from
the database, or from the API (`GET /dictionary`, the same document), and
never lists a table or a column of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


@dataclass(frozen=True)
class Table:
    name: str
    file_names: tuple[str, ...]  # the usual name first
    columns: tuple[str, ...]  # CSV order: the id first, the name second
    rules: tuple[str, ...]  # each column's field rule: id, name or datetime

    @property
    def id_column(self) -> str:
        return self.columns[0]


@dataclass(frozen=True)
class Dictionary:
    tables: tuple[Table, ...]  # load order: referenced tables first

    @classmethod
    def from_json(cls, document: list[dict[str, Any]]) -> Dictionary:
        """From data_dictionary()'s document."""
        return cls(
            tuple(
                Table(
                    name=t["table"],
                    file_names=tuple(t["file_names"]),
                    columns=tuple(c["name"] for c in t["columns"]),
                    rules=tuple(c["rule"] for c in t["columns"]),
                )
                for t in document
            )
        )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    def table_named_by(self, file_name: str) -> str | None:
        """The table a file's name says it holds (jobs.csv, hired_employees.csv.gz), if any."""
        base = Path(file_name).name.lower().removesuffix(".gz")
        return next((t.name for t in self.tables if base in t.file_names), None)

    def unknown(self, name: str) -> str:
        """What to say of a table that is not one of these."""
        return f"unknown table {name!r}: use one of {', '.join(self.names)}"

    def require(self, name: str) -> str:
        """name, when it is one of these tables; else ValueError (a usage mistake)."""
        if name not in self:
            raise ValueError(self.unknown(name))
        return name


QUERY = "select data_dictionary()"


def read(conn: psycopg.Connection) -> Dictionary:
    """The dictionary, leaving conn as it found it: idle stays idle (a load
    that starts inside a transaction is judged by one session alone)."""
    with conn.transaction():
        return Dictionary.from_json(conn.execute(QUERY).fetchone()[0])


async def read_async(conn: psycopg.AsyncConnection) -> Dictionary:
    return Dictionary.from_json((await (await conn.execute(QUERY)).fetchone())[0])
