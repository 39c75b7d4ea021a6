"""What Litestar's generated OpenAPI document cannot say by itself, added
once when the app is built: the CSV a route also answers with, the scope
each route's token needs (OpenAPI 3.1 lets a security requirement name
roles), and the Retry-After header of every 429 and 503."""

from __future__ import annotations

from litestar import Litestar
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, Schema
from litestar.openapi.spec.enums import OpenAPIType

from api.schemas import CSV

RETRY_AFTER = OpenAPIHeader(
    description="seconds to wait before trying again", schema=Schema(type=OpenAPIType.INTEGER)
)


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
