"""A table's columns as the database defines them, and their Avro and COPY types.
The database is the one source: a column added there changes the backups."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# PostgreSQL type -> (Avro type, psycopg binary COPY type)
TYPES: dict[str, tuple[object, str]] = {
    "integer": ("int", "int4"),
    "bigint": ("long", "int8"),
    "text": ("string", "text"),
    "timestamp with time zone": (
        {"type": "long", "logicalType": "timestamp-micros"},
        "timestamptz",
    ),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str

    @property
    def avro_type(self) -> object:
        return TYPES[self.pg_type][0]

    @property
    def copy_type(self) -> str:
        return TYPES[self.pg_type][1]


def table_columns(conn: psycopg.Connection, table: str) -> list[Column]:
    rows = conn.execute(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
        (table,),
    ).fetchall()
    columns = [Column(name, pg_type) for name, pg_type in rows]
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
