"""Anonymous requests are cheap and bounded, and no header or query
parameter the API reads makes it answer 5xx. Bodies are schemathesis's
(tests/test_reliability.py); here every operation's parameters, from the
OpenAPI document, and the headers every request may carry, get hostile
values (NUL, inf, nan, huge, not UTF-8, repeated) over a real socket."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from urllib.parse import quote_from_bytes

import pytest
from conftest import AUTH, TOKEN, api_settings, load_reference_rows, served_clone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from app import create_app
from dataarch.settings import ApiToken, Settings

SCHEMA = create_app(
    dataclasses.replace(Settings.from_env({}), tokens=(ApiToken(TOKEN, "admin"),))
).openapi_schema.to_schema()


def test_random_paths_do_not_grow_the_metrics(conn, dsn) -> None:
    with TestClient(create_app(api_settings(dsn))) as client:
        for n in range(50):
            client.get(f"/warm-up-{n}")
        client.get("/metrics", headers=AUTH)  # its own labels appear from the first scrape on
        before = len(client.get("/metrics", headers=AUTH).content)
        for n in range(3000):
            client.get(f"/{n:x}{'x' * 600}/{n}", headers={"Accept": "*/*"})
        after = client.get("/metrics", headers=AUTH).text
    assert len(after) < before + 200  # only the counts changed, no new labels
    assert 'route="unmatched",status="404"} 3050.0' in after


HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            b"\x00",
            b"a\x00b",
            b"inf",
            b"-inf",
            b"nan",
            b"NaN",
            b"1e5000",
            b"9" * 5000,
            b"-1",
            b"0",
            b"",
            b" ",
            b"\xff\xfe",
            b"\xc3",
            "\uffff".encode(),
            b"%",
            b"%00",
            b"..%2f..",
            b"utf-8\x00",
            b"*/*;q=inf",
            b"text/csv;q=nan",
            b"application/json;q=2",
            b"true",
            b"2021-02-30T00:00:00Z",
            b"\xe2\x80\xae",
            b"x" * 70000,
        ]
    ),  # fmt: skip
    st.binary(max_size=40),
    st.text(max_size=40).map(str.encode),
)
# Headers every request may carry, and what the API does with each.
HEADERS = ["accept", "authorization", "content-type", "x-request-id", "idempotency-key", "cookie"]


def _operations() -> list[tuple[str, str, list[str]]]:
    found = []
    for path, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            query = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            found.append((method.upper(), path, query))
    return sorted(found)


OPERATIONS = _operations()


def _request(method: str, path: str, query: list[tuple[str, bytes]], headers: dict) -> bytes:
    target = path.replace("{table}", "jobs").replace("{row_id}", "1").replace("{page}", "index")
    target = target.replace("{batch_id}", "1")
    if query:
        target += "?" + "&".join(f"{k}={quote_from_bytes(v, safe='')}" for k, v in query)
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    body = b"" if method in ("GET", "HEAD", "DELETE") else b"[]"
    lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _status(url: str, request: bytes) -> int:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        head = sock.recv(64)
    return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0


@pytest.fixture(scope="module")
def hostile_server(postgresql_proc, tmp_path_factory) -> Iterator[str]:
    """Failed token checks are part of the test: the limit is out of its way."""
    with served_clone(postgresql_proc, "hostile", tmp_path_factory.mktemp("b"),
                      DATAARCH_AUTH_FAILURE_LIMIT="1000000") as url:  # fmt: skip
        yield url


@pytest.mark.parametrize(("method", "path", "query"), OPERATIONS)
def test_no_parameter_or_header_value_makes_a_server_error(
    hostile_server, method, path, query
) -> None:
    names = [*query, "format", "limit"] if query else ["format"]

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        params=st.lists(st.tuples(st.sampled_from(names), HOSTILE_TEXT), max_size=4),
        header=st.sampled_from(HEADERS),
        value=HOSTILE_TEXT.filter(lambda v: b"\r" not in v and b"\n" not in v),
    )
    def hostile(params: list[tuple[str, bytes]], header: str, value: bytes) -> None:
        headers = {"authorization": f"Bearer {TOKEN}".encode(), header: value}
        if header != "authorization":
            headers["authorization"] = AUTH["Authorization"].encode()
        status = _status(hostile_server, _request(method, path, params, headers))
        assert 0 < status < 500, (method, path, params, header, value, status)

    hostile()


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        ("GET", "/tables/{table}/rejections", [("reason", b"a\x00b")], {}),
        ("POST", "/tables/{table}/csv", [("file", b"a\x00b")], {}),
        ("POST", "/tables/{table}/csv", [("encoding", b"utf-8\x00")], {}),
        ("GET", "/health/live", [], {"accept": b"*/*;q=inf"}),
        ("GET", "/tables/{table}/rejections", [], {"accept": b"text/csv;q=nan"}),
    ],
)
def test_what_the_attacker_tried_is_a_4xx(hostile_server, method, path, query, headers) -> None:
    sent = {"authorization": AUTH["Authorization"].encode(), "content-type": b"text/csv",
            **headers}  # fmt: skip
    status = _status(hostile_server, _request(method, path, query, sent))
    assert 400 <= status < 500, (path, query, headers, status)


def test_a_nul_in_a_json_body_value_is_a_4xx(conn, dsn) -> None:
    load_reference_rows(conn)
    with TestClient(create_app(api_settings(dsn))) as client:
        answer = client.post(
            "/rejections/close", json={"ids": [1], "note": "a\u0000b"}, headers=AUTH
        )
    assert answer.status_code == 400, answer.text
