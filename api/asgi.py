"""Wrappers around the whole application, before any routing: a request id
for every request (X-Request-ID, taken from the client when it is sane,
else made here; echoed in the answer and in every log line of the request),
HEAD answered as GET without the body, and the request metrics."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api.metrics import Metrics
from dataarch import logs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _SANE_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


def outermost(app: ASGIApp, metrics: Callable[[], Metrics | None]) -> ASGIApp:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        rid = _request_id(scope)
        token = logs.request_id.set(rid)
        head = scope["method"] == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        started, status = time.perf_counter(), [500]

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        try:
            await app(scope, receive, answer)
        finally:
            logs.request_id.reset(token)
            if (found := metrics()) is not None:
                route = scope.get("path_template") or _route_of(scope)
                found.request(route, "HEAD" if head else scope["method"], status[0],
                              time.perf_counter() - started)  # fmt: skip

    return handle


UNMATCHED = "unmatched"  # the one label of every path no route matched


def _route_of(scope: Scope) -> str:
    """The route's template once Litestar matched it, else UNMATCHED: a
    metric label is never what a client typed, so anonymous requests for
    random paths cannot grow the metrics without bound."""
    handler = scope.get("route_handler")
    if handler is not None and getattr(handler, "paths", None):
        return sorted(handler.paths)[0]
    return UNMATCHED
