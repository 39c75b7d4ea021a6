"""A table's columns as the database defines them, and their Avro and COPY types.
The database is the one source: a column added there changes the backups."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

TIMESTAMP = "timestamp with time zone"


@dataclass(frozen=True)
class AvroMapping:
    """How a PostgreSQL type is written to and read from a backup."""

    avro: object  # the Avro type of the file's schema
    copy_type: str  # psycopg's binary COPY type, for restore's staging
    value: str  # SQL giving the encoder the column `{}` as Avro stores it
    encoder: str  # the function of procedures/055 writing that value's bytes


TYPES: dict[str, AvroMapping] = {
    "smallint": AvroMapping("int", "int2", "{}", "avro_long"),
    "integer": AvroMapping("int", "int4", "{}", "avro_long"),
    "bigint": AvroMapping("long", "int8", "{}", "avro_long"),
    "text": AvroMapping("string", "text", "convert_to({}, 'UTF8')", "avro_bytes"),
    # bpchar's binary form is text's; a cast to text drops the padding rpad restores
    "character(5)": AvroMapping("string", "text", "convert_to(rpad({}, 5), 'UTF8')", "avro_bytes"),
    "jsonb": AvroMapping("string", "jsonb", "convert_to({}::text, 'UTF8')", "avro_bytes"),
    "boolean": AvroMapping("boolean", "bool", "{}", "avro_boolean"),
    TIMESTAMP: AvroMapping(
        {"type": "long", "logicalType": "timestamp-micros"},
        "timestamptz",
        "(extract(epoch from {}) * 1000000)::int8",
        "avro_long",
    ),  # fmt: skip
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    nullable: bool = False
    has_default: bool = False  # what a restore fills in when a file lacks the column

    @property
    def avro_type(self) -> object:
        avro = TYPES[self.pg_type].avro
        return ["null", avro] if self.nullable else avro

    @property
    def copy_type(self) -> str:
        return TYPES[self.pg_type].copy_type

    def avro_value(self) -> sql.Composable:
        """The column as its Avro value (epoch microseconds, UTF-8 bytes)."""
        return sql.SQL(TYPES[self.pg_type].value).format(sql.Identifier(self.name))

    def avro_encoded(self) -> sql.Composable:
        """The Avro bytes of avro_value() named as the column: its field of a record."""
        encoded = sql.SQL("{}({})").format(
            sql.Identifier(TYPES[self.pg_type].encoder), sql.Identifier(self.name)
        )
        return sql.SQL("avro_optional({})").format(encoded) if self.nullable else encoded

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
