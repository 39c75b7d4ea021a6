"""The reports in a browser: the pages at /reports/ (view scope), and the
sign-in a stakeholder needs for them: GET /login shows a form, POST /login
takes a token (a viewer token, DATAARCH_VIEWER_TOKEN, or any API token) and
sets a session cookie that opens the reports and the KPIs only, POST
/logout ends it. A browser that asks for a page without credentials is
sent to the sign-in page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.params import Body, PathParameter, QueryParameter
from litestar.response import Redirect

from api.problems import problem_responses
from api.security import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    close_session,
    find_token,
    open_session,
    record_failure,
    refuse_if_failing,
)
from api.state import AppServices, BlockingPool
from reports import PAGES, load_data, render_login, render_page

HTML = "text/html"
YearQuery = Annotated[int, QueryParameter(ge=1, le=9999, description="e.g. 2021")]


def _page(blocking: BlockingPool, name: str, year: int) -> Response[str]:
    with blocking.connection() as conn:
        data = load_data(conn, year)
    html = render_page(name, data, link_suffix=f"?year={year}", live=True)
    return Response(content=html, media_type=MediaType.HTML)


class ReportsController(Controller):
    path = "/reports"
    tags = ["reports"]
    opt = {"scope": "view", "sign_in": True, "produces": [HTML]}

    @get(
        "/", sync_to_thread=True, operation_id="getReportIndex",
        summary="The reports' index page (self-contained HTML)",
        responses=problem_responses(400, 401, 403, 406, 503),
    )  # fmt: skip
    def index(self, blocking: BlockingPool, year: YearQuery = 2021) -> Response[str]:
        return _page(blocking, "index", year)

    @get(
        "/{page:str}", sync_to_thread=True, operation_id="getReportPage",
        summary="A report: hires-by-quarter, departments-above-mean, data-quality (.html or not)",
        responses=problem_responses(400, 401, 403, 404, 406, 503),
    )  # fmt: skip
    def page(
        self, blocking: BlockingPool, page: Annotated[str, PathParameter()], year: YearQuery = 2021
    ) -> Response[str]:
        name = page.removesuffix(".html")
        if name not in PAGES:
            raise NotFoundException(f"no report named {page!r}: see /reports/")
        return _page(blocking, name, year)


@dataclass
class SignIn:
    token: str
    next: str = "/reports/"


def _safe_next(target: str) -> str:
    """Only a path of this site: never an address elsewhere (an open redirect)."""
    parts = urlsplit(target)
    return (
        target if target.startswith("/") and not parts.netloc and not parts.scheme else "/reports/"
    )


class SignInController(Controller):
    tags = ["reports"]
    include_in_schema = False  # a browser's pages, not the API

    @get("/login", opt={"produces": [HTML]})
    async def form(
        self,
        next_page: Annotated[str, QueryParameter(name="next")] = "/reports/",
        failed: Annotated[bool, QueryParameter()] = False,
    ) -> Response[str]:
        return Response(render_login(_safe_next(next_page), failed), media_type=MediaType.HTML)

    @post("/login", status_code=303, opt={"produces": [HTML]})
    async def sign_in(
        self,
        request: Request,
        services: AppServices,
        data: Annotated[SignIn, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Redirect:
        target = _safe_next(data.next)
        refuse_if_failing(request, services.failures)
        token = data.token.strip()
        if await find_token(token, services) is None:
            record_failure(request, services.failures)
            return Redirect(f"/login?failed=true&next={quote(target, safe='')}", status_code=303)
        answer = Redirect(target, status_code=303)
        answer.set_cookie(
            SESSION_COOKIE, await open_session(services.pool, token), max_age=SESSION_SECONDS,
            httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/",
        )  # fmt: skip
        return answer

    @post("/logout", status_code=303, opt={"produces": [HTML]})
    async def sign_out(self, request: Request, services: AppServices) -> Redirect:
        """Ends the session on the server too: its cookie opens nothing after."""
        await close_session(services.pool, request.cookies.get(SESSION_COOKIE))
        answer = Redirect("/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer
