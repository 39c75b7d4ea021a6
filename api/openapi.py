"""What Litestar's generated OpenAPI document cannot say by itself, added
once when the app is built: the CSV a route also answers with, the scope
each route's token needs (OpenAPI 3.1 lets a security requirement name
roles), the Retry-After header of every 429 and 503, and X-Request-ID; and
the data dictionary's tables and rows (describe_tables), the release's when
the app is built, the database's once a served app has read it."""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    Parameter,
    Reference,
    Schema,
)
from litestar.openapi.spec.enums import OpenAPIType

from api.schemas import CSV, JSON, RELEASE_DICTIONARY
from dataarch.dictionary import Dictionary, Table

# The field rules (procedures/010_field_rules.sql), as the document states
# them: the database decides, and a row that breaks one is rejected with its
# reason.
RULES = {
    "id": lambda: Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=2147483647),
    "name": lambda: Schema(type=OpenAPIType.STRING, min_length=1, max_length=200),
    "datetime": lambda: Schema(
        type=OpenAPIType.STRING, format="date-time",
        description="ISO 8601 with a time zone, e.g. 2021-07-27T16:02:08Z; years 0001-9999 in UTC",
    ),
}  # fmt: skip

RETRY_AFTER = OpenAPIHeader(
    description="seconds to wait before trying again", schema=Schema(type=OpenAPIType.INTEGER)
)
REQUEST_ID_SCHEMA = Schema(type=OpenAPIType.STRING, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")
REQUEST_ID = Parameter(
    name="X-Request-ID", param_in=ParamType.HEADER, required=False, schema=REQUEST_ID_SCHEMA,
    description="the request's id, echoed in the answer and in every log line of it;"
    " one is made when absent or not of this shape",
)  # fmt: skip
ECHOED_ID = OpenAPIHeader(description="the request's id (see the parameter)",
                          schema=REQUEST_ID_SCHEMA)  # fmt: skip


def finish(app: Litestar) -> None:
    """Complete the document in place, before it is first served."""
    handlers = {
        (path, method.lower()): handler
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        for path in [route.path_format]
    }
    for path, item in (app.openapi_schema.paths or {}).items():
        for method in ("get", "post"):
            operation = getattr(item, method, None)
            if operation is None or operation.responses is None:
                continue
            opt = handlers[(path, method)].opt
            if operation.security and "scope" in opt:
                operation.security = [{"bearer": [opt["scope"]]}]
            ok = operation.responses.get("200")
            if CSV in opt.get("produces", []) and ok is not None and ok.content:
                csv = Schema(type=OpenAPIType.STRING, description="CSV with a header line")
                ok.content[CSV] = OpenAPIMediaType(schema=csv)
            for status in ("429", "503"):
                waiting = operation.responses.get(status)
                if waiting is not None:
                    waiting.headers = {**(waiting.headers or {}), "Retry-After": RETRY_AFTER}
            operation.parameters = [*(operation.parameters or []), REQUEST_ID]
            for answer in operation.responses.values():
                answer.headers = {**(answer.headers or {}), "X-Request-ID": ECHOED_ID}
    describe_tables(app.openapi_schema, RELEASE_DICTIONARY, was=Dictionary(()))


def row_schema_name(table: str) -> str:
    """A table's row in the document: employees -> Employee."""
    return "".join(part.title() for part in table.removesuffix("s").split("_"))


def _row_schema(table: Table) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=list(table.columns),
        properties={c: RULES[rule]() for c, rule in zip(table.columns, table.rules, strict=True)},
        additional_properties=False,
    )


def describe_tables(document: OpenAPI, dictionary: Dictionary, *, was: Dictionary) -> None:
    """The dictionary's tables in the document, in place, instead of those of
    `was` (what it described before): a row schema for each table, the rows
    POST /tables/{table}/rows takes and GET one answers, and every `table`
    parameter's values."""
    schemas = document.components.schemas
    for table in was.tables:
        schemas.pop(row_schema_name(table.name), None)
    for table in dictionary.tables:
        schemas[row_schema_name(table.name)] = _row_schema(table)
    refs = [Reference(ref=f"#/components/schemas/{row_schema_name(t)}") for t in dictionary.names]
    for item in (document.paths or {}).values():
        for operation in (item.get, item.post):
            if operation is None:
                continue
            for parameter in operation.parameters or []:
                if parameter.name == "table" and isinstance(parameter.schema, Schema):
                    parameter.schema.enum = list(dictionary.names)
            if operation.operation_id == "getRow":
                operation.responses["200"].content[JSON].schema = Schema(one_of=list(refs))
            if operation.operation_id == "ingestRows" and operation.request_body:
                rows = operation.request_body.content[JSON].schema.items
                records = [s for s in rows.one_of if not isinstance(s, Reference)]
                rows.one_of = [*refs, *records]
