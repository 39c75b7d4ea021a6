"""A table's columns as the database defines them, and their Avro and COPY types.
The database is the one source: a column added there changes the backups."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

TIMESTAMP = "timestamp with time zone"
# PostgreSQL type -> (Avro type, psycopg binary COPY type). Timestamps leave
# the database as epoch microseconds and jsonb as its text (see dump.py).
TYPES: dict[str, tuple[object, str]] = {
    "smallint": ("int", "int2"),
    "integer": ("int", "int4"),
    "bigint": ("long", "int8"),
    "text": ("string", "text"),
    "character(5)": ("string", "text"),  # bpchar's binary form is text's
    "jsonb": ("string", "jsonb"),
    "boolean": ("boolean", "bool"),
    TIMESTAMP: ({"type": "long", "logicalType": "timestamp-micros"}, "timestamptz"),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False
    has_default: bool = False  # what a restore fills in when a file lacks the column

    @property
    def avro_type(self) -> object:
        avro = TYPES[self.pg_type][0]
        return ["null", avro] if self.nullable else avro

    @property
    def copy_type(self) -> str:
        return TYPES[self.pg_type][1]

    def as_list(self) -> list[object]:
        """How the file's header records it (dataarch.columns)."""
        return [self.name, self.pg_type, self.nullable]


def table_columns(conn: psycopg.Connection, table: str) -> list[Column]:
    rows = conn.execute(
        "select attname, format_type(atttypid, atttypmod), not attnotnull, atthasdef"
        " from pg_attribute"
        " where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
        (table,),
    ).fetchall()
    columns = [Column(*row) for row in rows]
    unknown = [c for c in columns if c.pg_type not in TYPES]
    if unknown:
        raise TypeError(f"{table}: no Avro mapping for {unknown}")
    return columns


def avro_schema(table: str, columns: list[Column]) -> dict:
    return {
        "type": "record",
        "name": table,
        "namespace": "dataarch",
        "fields": [{"name": c.name, "type": c.avro_type} for c in columns],
    }
