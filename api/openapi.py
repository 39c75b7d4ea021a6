"""What Litestar's generated OpenAPI document cannot say by itself, added
once when the app is built: the CSV a route also answers with, the scope
each route's token needs (OpenAPI 3.1 lets a security requirement name
roles), the Retry-After header of every 429 and 503, and X-Request-ID."""

from __future__ import annotations

from litestar import Litestar
from litestar.enums import ParamType
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType

from api.schemas import CSV

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
