"""Who may do what. Every route declares a scope in its opt ("view", "read",
"ingest" or "admin"; a route that forgets is admin-only), and the guard lets
a request through when its bearer token's scope allows that one. A person
who signed in to the reports with a token (POST /login) carries a session
cookie instead, which opens the view scope only: the reports and the KPIs,
never a write."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from dataarch.settings import ApiToken

SESSION_COOKIE = "dataarch_session"
SESSION_SECONDS = 8 * 3600


def find_token(offered: str, tokens: tuple[tuple[bytes, ApiToken], ...]) -> ApiToken | None:
    """The configured token equal to `offered`, compared in constant time with each."""
    found = [token for value, token in tokens if hmac.compare_digest(offered.encode(), value)]
    return found[0] if found else None


def session_value(key: bytes, now: float | None = None) -> str:
    """A sign-in cookie's value: when it expires, signed with the app's key."""
    expires = int((now or time.time()) + SESSION_SECONDS)
    return f"{expires}.{hmac.new(key, f'view:{expires}'.encode(), hashlib.sha256).hexdigest()}"


def session_is_valid(value: str | None, key: bytes) -> bool:
    expires, _, signature = (value or "").partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    wanted = hmac.new(key, f"view:{expires}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, wanted)


class SignInRequired(HTTPException):
    """A browser asked for a page without credentials: 303 to the sign-in page."""

    status_code = 303


async def require_token(connection: ASGIConnection, route: BaseRouteHandler) -> None:
    """Async although it never awaits: Litestar runs a sync guard in a worker
    thread, a hop of its own on every request."""
    scope = route.opt.get("scope", "admin")
    services = connection.app.state.services
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and (token := find_token(presented.strip(), services.tokens)):
        if not token.allows(scope):
            raise PermissionDeniedException(
                f"this token's scope is {token.scope}; this route needs {scope}",
                headers={"WWW-Authenticate": f'Bearer realm="dataarch", scope="{scope}"'},
            )
        return
    if session_is_valid(connection.cookies.get(SESSION_COOKIE), services.session_key):
        if scope != "view":
            raise PermissionDeniedException(
                f"a sign-in session opens the reports and KPIs only; this route needs {scope}"
            )
        return
    if route.opt.get("sign_in") and not connection.headers.get("authorization"):
        target = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
        raise SignInRequired(headers={"Location": f"/login?next={quote(target, safe='')}"})
    raise NotAuthorizedException(
        "send a valid API token as 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": 'Bearer realm="dataarch"'},
    )
