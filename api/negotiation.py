"""Content negotiation by the rules: the Accept header's media ranges with
their q-values (Litestar parses them), an explicit ?format= first, and 406
when the route can produce nothing the client accepts. Every route declares
what it produces in opt["produces"] (default: JSON); a before_request hook
refuses the others before the handler runs."""

from __future__ import annotations

import re

from litestar import Request
from litestar.datastructures import Accept
from litestar.exceptions import HTTPException

from api.schemas import CSV, JSON

FORMATS = {"json": JSON, "csv": CSV}
# RFC 9110 12.4.2: a weight is 0 to 1 with at most three decimals
_WEIGHT = re.compile(r"q=(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)", re.I)


def _accept(request: Request) -> Accept:
    """The Accept header, parsed; a malformed one (a weight such as q=inf or
    q=2) is the client's mistake, 400, not a crash of the parser."""
    header = request.headers.get("accept", "*/*")
    for media_range in header.split(","):
        for parameter in media_range.split(";")[1:]:
            parameter = parameter.strip()
            if parameter[:2].lower() == "q=" and not _WEIGHT.fullmatch(parameter):
                raise HTTPException(
                    status_code=400,
                    detail=f"the Accept header's weight {parameter!r} is not a number from 0 to 1",
                )
    return request.accept


def choose(request: Request, fmt: str | None, offered: list[str]) -> str:
    """The media type to answer with: ?format= when given, else the best
    match of Accept (no Accept header: the first one offered)."""
    if fmt is not None:
        return FORMATS[fmt]
    if "accept" not in request.headers:
        return offered[0]
    best = _accept(request).best_match(offered)
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
    if "accept" in request.headers and _accept(request).best_match(offered) is None:
        raise not_acceptable(offered)


def download(filename: str) -> dict[str, str]:
    """A CSV answer saved under its own name."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
