"""The shapes the OpenAPI document describes. Bodies travel between the
client and PostgreSQL as JSON text, undecoded; these classes say what that
text holds, per table, for client generators."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar.openapi.spec import OpenAPIMediaType, Operation, Reference, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import KwargDefinition, PathParameter

# The OpenAPI document's copy of the data dictionary, for client generators:
# the document is built without a database. The service itself checks
# tables against the database's dictionary (api/state.py), and
# tests/test_dictionary.py fails when this copy or the row classes below
# differ from it.
TABLES = ("departments", "jobs", "employees")
JSON = "application/json"
CSV = "text/csv"

# the path parameter: one of the data dictionary's tables (GET /dictionary);
# other names answer 404
TablePath = Annotated[
    str,
    PathParameter(
        description="a table of the data dictionary (GET /dictionary)",
        schema_extra={"enum": list(TABLES)},
    ),
]


# The data dictionary's rules, as the OpenAPI document states them (the
# database decides; a row that breaks one is rejected with its reason).
Id = Annotated[int, KwargDefinition(ge=1, le=2147483647)]
Name = Annotated[str, KwargDefinition(min_length=1, max_length=200)]
When = Annotated[str, KwargDefinition(format="date-time")]


@dataclass
class Department:
    department_id: Id
    department_name: Name


@dataclass
class Job:
    job_id: Id
    job_name: Name


@dataclass
class Employee:
    employee_id: Id
    employee_name: Name
    hiring_date: When
    """ISO 8601 with a time zone, e.g. 2021-07-27T16:02:08Z; years 0001-9999 in UTC"""
    department_id: Id
    job_id: Id


@dataclass
class Rejection:
    index: int
    reason_code: str
    field: str | None
    message: str


@dataclass
class BatchSummary:
    batch_id: int
    table: str
    mode: Literal["per_row", "atomic"]
    submitted: int
    inserted: int
    rejected: int
    resolved: int
    """earlier rejections of the table whose ids this batch inserted"""
    rejections: list[Rejection]
    replayed: bool | None = None
    """true when the answer is the stored one of an earlier request with the same key"""


@dataclass
class CsvSummary:
    status: Literal["migrated", "already_migrated"]
    table: str
    file: str
    batch_id: int
    lines: int | None = None
    header: int | None = None
    blank: int | None = None
    records: int | None = None
    submitted: int | None = None
    inserted: int | None = None
    rejected: int | None = None
    resolved: int | None = None
    by_reason: dict[str, int] | None = None
    migrated_at: str | None = None
    as_file: str | None = None
    open_rejections: int | None = None
    """already_migrated: its lines still rejected, which a retry judges again"""


@dataclass
class RejectionPage:
    total: int
    limit: int
    offset: int
    items: list[dict[str, Any]]


@dataclass
class BatchPage:
    total: int
    limit: int
    offset: int
    items: list[dict[str, Any]]
    """batches newest first: ingest_batches' columns, with kind, file and idempotency_key"""


@dataclass
class Lineage:
    table: str
    id: int
    row: dict[str, Any]
    batch: dict[str, Any] | None
    """the batch that wrote it; null for a row of an earlier release"""
    position: dict[str, int | str | None] | None
    """{"line": n} in a CSV file, {"index": n} in an API batch, {"rejection": id,
    "line": n, "file": name} for a rejected CSV line that a retry loaded"""
    rejections: list[dict[str, Any]]
    """every rejection of this id in this table, oldest first: the fix loop"""


@dataclass
class Reverted:
    reverted: list[dict[str, Any]]
    """each batch reverted, dependants first: {batch_id (the revert's), reverts, table,
    removed, reopened}"""


@dataclass
class RevertPlan:
    batches: list[dict[str, Any]]
    """what a revert would take out, in order: {batch_id, table_name, rows}"""
    dependants: list[dict[str, Any]]
    refused: str | None


@dataclass
class HiresByQuarter:
    department_id: int
    department: str
    job_id: int
    job: str
    Q1: int  # noqa: N815 - the published results' column names
    Q2: int  # noqa: N815
    Q3: int  # noqa: N815
    Q4: int  # noqa: N815


@dataclass
class DepartmentAboveMean:
    id: int
    department: str
    hired: int


def _row_schema(table: type) -> Reference:
    return Reference(ref=f"#/components/schemas/{table.__name__}")


@dataclass
class RowsOperation(Operation):
    """Documents the raw body that POST /tables/{table}/rows reads undecoded."""

    def __post_init__(self) -> None:
        record = Schema(
            type=OpenAPIType.ARRAY,
            description="a CSV record: the fields in column order; null is an empty field",
            items=Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.NUMBER),
                                 Schema(type=OpenAPIType.NULL)]),
        )  # fmt: skip
        unread = Schema(type=OpenAPIType.STRING, description="a CSV record the sender could not"
                        " read (logged as malformed_line)")  # fmt: skip
        self.request_body = RequestBody(
            required=True,
            description="1 to 1000 rows of the table in the path: objects keyed by column name"
            " (every column is mandatory), or records.",
            content={JSON: OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.ARRAY, min_items=1, max_items=1000,
                items=Schema(one_of=[*(_row_schema(t) for t in (Department, Job, Employee)),
                                     record, unread]),
            ))},
        )  # fmt: skip


@dataclass
class CsvBodyOperation(Operation):
    """Documents the CSV file that POST /tables/{table}/csv streams."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="the file, as it is (RFC 4180; see the README for what a record is)",
            content={CSV: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))},
        )


ROW_SCHEMAS = (Department, Job, Employee)
