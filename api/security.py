"""Who may do what. Every route declares a scope in its opt ("view", "read",
"ingest" or "admin"; a route that forgets is admin-only), and the guard lets
a request through when its bearer token's scope allows that one. A token is
one the deployment configured (DATAARCH_*_TOKEN, var/api-token), compared in
constant time, or one `dataarch token create` issued, which the database
knows by its SHA-256 only and every API process asks it about, so a revoked
token is refused at once. A person who signed in to the reports with a
token (POST /login) carries a session cookie instead, which opens the view
scope only: the reports and the KPIs, never a write. Sessions live in the
database too: signing out (or revoking the token) ends them for every
process. An address that fails too often is refused for a while (429)."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict, deque
from urllib.parse import quote

from litestar import Response
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from psycopg_pool import AsyncConnectionPool

from dataarch.settings import ApiToken

SESSION_COOKIE = "dataarch_session"
SESSION_SECONDS = 8 * 3600


def digest(secret: str) -> str:
    """How the database knows a token or a session: the SHA-256 of its secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def configured_token(offered: str, tokens: tuple[tuple[bytes, ApiToken], ...]) -> ApiToken | None:
    """The configured token equal to `offered`, compared in constant time with each."""
    found = [token for value, token in tokens if hmac.compare_digest(offered.encode(), value)]
    return found[0] if found else None


async def find_token(offered: str, services) -> ApiToken | None:  # noqa: ANN001
    """A configured token, else a live issued one (the database says)."""
    if not offered:
        return None
    if token := configured_token(offered, services.tokens):
        return token
    scope = await _ask(services.pool, "select api_token_scope(%s)", digest(offered))
    return ApiToken(offered, scope) if scope else None


async def open_session(pool: AsyncConnectionPool, token: str) -> str:
    """A new sign-in session for `token`; returns the cookie's value."""
    cookie = secrets.token_urlsafe(32)
    await _ask(pool, "select api_session_open(%s, %s, %s)", digest(cookie), digest(token),
               SESSION_SECONDS)  # fmt: skip
    return cookie


async def close_session(pool: AsyncConnectionPool, cookie: str | None) -> None:
    if cookie:
        await _ask(pool, "select api_session_close(%s)", digest(cookie))


async def _ask(pool: AsyncConnectionPool, query: str, *params: object) -> object:
    async with pool.connection() as conn:
        cursor = await conn.execute(query, params)
        return (await cursor.fetchone())[0]


class Failures:
    """Failed token checks and sign-ins per client address: after `limit`
    of them within `window` seconds, the address is refused (429) until the
    oldest leaves the window, whatever it offers, so guessing is slow and
    a right guess looks like every other answer. At most `addresses` are
    remembered (the least recently failing go first): anonymous requests
    from anywhere cannot grow it without bound."""

    def __init__(self, limit: int = 20, window: float = 60.0, addresses: int = 10_000) -> None:
        self.limit, self.window, self.addresses = limit, window, addresses
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, address: str, now: float | None = None) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        seen = self._seen.get(address)
        while seen and seen[0] <= now - self.window:
            seen.popleft()
        if not seen or len(seen) < self.limit:
            return 0
        return max(1, math.ceil(seen[0] + self.window - now))

    def record(self, address: str, now: float | None = None) -> None:
        seen = self._seen.setdefault(address, deque(maxlen=self.limit))
        seen.append(time.monotonic() if now is None else now)
        self._seen.move_to_end(address)
        while len(self._seen) > self.addresses:
            self._seen.popitem(last=False)


class TooManyFailures(HTTPException):
    status_code = 429


def refuse_if_failing(connection: ASGIConnection, failures: Failures) -> None:
    """429 with Retry-After while the client's address has failed too often."""
    address = connection.client.host if connection.client else "unknown"
    if wait := failures.wait(address):
        raise TooManyFailures(
            f"too many failed attempts from {address}; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def record_failure(connection: ASGIConnection, failures: Failures) -> None:
    failures.record(connection.client.host if connection.client else "unknown")


class SignInRequired(HTTPException):
    """A browser asked for a page without credentials: 303 to the sign-in page."""

    status_code = 303


def sign_in_first(_: object, exc: SignInRequired) -> Response:
    """The 303 itself: a redirect, without a problem document."""
    return Response(content=b"", status_code=303, headers=exc.headers)


async def require_token(connection: ASGIConnection, route: BaseRouteHandler) -> None:
    """Async: a sync guard would run in a worker thread, a hop of its own on
    every request; and issued tokens and sessions are the database's."""
    scope = route.opt.get("scope", "admin")
    services = connection.app.state.services
    refuse_if_failing(connection, services.failures)
    scheme, _, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and (token := await find_token(presented.strip(), services)):
        if not token.allows(scope):
            raise PermissionDeniedException(
                f"this token's scope is {token.scope}; this route needs {scope}",
                headers={"WWW-Authenticate": f'Bearer realm="dataarch", scope="{scope}"'},
            )
        return
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie and await _ask(services.pool, "select api_session_valid(%s)", digest(cookie)):
        if scope != "view":
            raise PermissionDeniedException(
                f"a sign-in session opens the reports and KPIs only; this route needs {scope}"
            )
        return
    if connection.headers.get("authorization"):
        record_failure(connection, services.failures)
    elif route.opt.get("sign_in"):
        target = connection.url.path + (f"?{connection.url.query}" if connection.url.query else "")
        raise SignInRequired(headers={"Location": f"/login?next={quote(target, safe='')}"})
    raise NotAuthorizedException(
        "send a valid API token as 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": 'Bearer realm="dataarch"'},
    )
