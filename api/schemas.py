"""The shapes the OpenAPI document describes. Bodies travel between the
client and PostgreSQL as JSON text, undecoded; these classes say what that
text holds, for client generators. The tables' rows are described from the
data dictionary (api/openapi.describe_tables)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import PathParameter

from dataarch.dictionary import Dictionary, Table

# The release's data dictionary, for the document built without a database
# (tests, client generators). A served app describes the database's own
# instead, read at startup (api/openapi.describe_tables); the service checks
# tables against the database's dictionary (api/state.py), and
# tests/test_dictionary.py fails when this copy differs from it.
RELEASE_DICTIONARY = Dictionary((
    Table("departments", ("departments.csv",), ("department_id", "department_name"),
          ("id", "name")),
    Table("jobs", ("jobs.csv",), ("job_id", "job_name"), ("id", "name")),
    Table("employees", ("hired_employees.csv", "employees.csv"),
          ("employee_id", "employee_name", "hiring_date", "department_id", "job_id"),
          ("id", "name", "datetime", "id", "id")),
))  # fmt: skip
JSON = "application/json"
CSV = "text/csv"

# the path parameter: one of the data dictionary's tables (GET /dictionary);
# other names answer 404 (the document's enum is the dictionary's)
TablePath = Annotated[
    str, PathParameter(description="a table of the data dictionary (GET /dictionary)")
]


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
                # the tables' rows come first (api/openapi.describe_tables)
                items=Schema(one_of=[record, unread]),
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
