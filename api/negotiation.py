"""Content negotiation by the rules: the Accept header's media ranges with
their q-values (Litestar parses them), an explicit ?format= first, and 406
when the route can produce nothing the client accepts. Every route declares
what it produces in opt["produces"] (default: JSON); a before_request hook
refuses the others before the handler runs."""

from __future__ import annotations

from litestar import Request
from litestar.exceptions import HTTPException

from api.schemas import CSV, JSON

FORMATS = {"json": JSON, "csv": CSV}


def choose(request: Request, fmt: str | None, offered: list[str]) -> str:
    """The media type to answer with: ?format= when given, else the best
    match of Accept (no Accept header: the first one offered)."""
    if fmt is not None:
        return FORMATS[fmt]
    if "accept" not in request.headers:
        return offered[0]
    best = request.accept.best_match(offered)
    if best is None:
        raise not_acceptable(offered)
    return best


def not_acceptable(offered: list[str]) -> HTTPException:
    return HTTPException(status_code=406, detail=f"this route answers with {' or '.join(offered)}")


async def refuse_the_unacceptable(request: Request) -> None:
    """before_request: 406 when nothing the route produces is acceptable."""
    offered = request.route_handler.opt.get("produces", [JSON])
    fmt = request.query_params.get("format")
    if fmt in FORMATS and FORMATS[fmt] in offered:
        return
    if "accept" in request.headers and request.accept.best_match(offered) is None:
        raise not_acceptable(offered)
