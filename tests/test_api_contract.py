"""The API as a contract: an OpenAPI document a client generator can trust,
content negotiation by the rules, request ids, metrics, HEAD, and a 4xx
(never a 5xx) for hostile input."""

from __future__ import annotations

import dataclasses
import logging
import socket

import httpx
import pytest
from conftest import (
    AUTH,
    JSON_AUTH,
    PROJECT,
    TOKEN,
    api_settings,
    employee,
    load_reference_rows,
)
from litestar.testing import TestClient
from openapi_spec_validator import validate

from app import create_app
from dataarch.errors import CATALOGUE
from dataarch.settings import ApiToken, Settings

SCHEMA = create_app(
    dataclasses.replace(Settings.from_env({}), tokens=(ApiToken(TOKEN, "admin"),))
).openapi_schema.to_schema()


def test_the_openapi_document_is_valid() -> None:
    validate(SCHEMA)  # raises on the first error


def test_operations_have_readable_ids_and_real_problem_documents() -> None:
    ids = {op["operationId"] for item in SCHEMA["paths"].values() for op in item.values()}
    assert {"ingestRows", "getRow", "listRejections", "uploadCsv", "restoreTable",
            "getHiresByQuarter", "getReadiness", "getMetrics"} <= ids  # fmt: skip
    rows = SCHEMA["paths"]["/tables/{table}/rows"]["post"]
    bad = rows["responses"]["400"]["content"]
    assert list(bad) == ["application/problem+json"] and "examples" not in bad[next(iter(bad))]
    problem = SCHEMA["components"]["schemas"]["Problem"]["properties"]
    assert {"status", "title", "detail", "sqlstate", "hint"} <= set(
        problem
    ) and "extra" not in problem
    table = next(p for p in rows["parameters"] if p["name"] == "table")
    assert table["schema"]["enum"] == ["departments", "jobs", "employees"]
    items = rows["requestBody"]["content"]["application/json"]["schema"]["items"]["oneOf"]
    assert {"#/components/schemas/Employee", "#/components/schemas/Job"} <= {
        i.get("$ref") for i in items
    }
    assert SCHEMA["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    kpi = SCHEMA["paths"]["/kpis/hires-by-quarter"]["get"]["responses"]["200"]["content"]
    assert {"application/json", "text/csv"} <= set(kpi)
    assert "Retry-After" in rows["responses"]["503"].get("headers", {})


@pytest.fixture
def client(conn, dsn):  # noqa: ANN201
    load_reference_rows(conn)
    with TestClient(create_app(api_settings(dsn))) as client:
        yield client


@pytest.mark.parametrize(
    ("accept", "status", "media"),
    [
        ("text/csv;q=0.1, application/json", 200, "application/json"),
        ("application/json;q=0.5, text/csv", 200, "text/csv"),
        ("text/*", 200, "text/csv"),
        ("*/*", 200, "application/json"),
        ("application/xml", 406, "application/problem+json"),
    ],
)
def test_content_negotiation_by_the_rules(client, accept, status, media) -> None:
    answer = client.get("/kpis/hires-by-quarter", headers={**AUTH, "Accept": accept})
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith(media)


def test_a_json_only_route_refuses_what_it_cannot_produce(client) -> None:
    answer = client.get("/tables/jobs/rows/1", headers={**AUTH, "Accept": "text/csv"})
    assert answer.status_code == 406


def test_request_ids_are_echoed_and_logged(client, caplog) -> None:
    caplog.set_level(logging.INFO)
    given = client.get("/tables/jobs/rows/1", headers={**AUTH, "X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/tables/jobs/rows/1", headers=AUTH)
    assert len(made.headers["x-request-id"]) == 32
    insane = client.get("/tables/jobs/rows/1", headers={**AUTH, "X-Request-ID": "x" * 500})
    assert insane.headers["x-request-id"] != "x" * 500
    client.post("/tables/jobs/rows", json=[{"job_id": 77, "job_name": "x"}],
                headers={**JSON_AUTH, "X-Request-ID": "batch-77"})  # fmt: skip
    from dataarch.logs import JsonFormatter

    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "dataarch.api"]
    assert any('"request_id": "batch-77"' in line and '"batch"' in line for line in lines)


def test_metrics(client) -> None:
    client.post("/tables/employees/rows", json=[employee(1), employee(2, job_id=99)],
                headers=JSON_AUTH)  # fmt: skip
    text = client.get("/metrics", headers=AUTH).text
    assert 'dataarch_ingest_rows_total{outcome="inserted",table="employees"} 1.0' in text
    assert 'dataarch_ingest_rows_total{outcome="rejected",table="employees"} 1.0' in text
    assert "dataarch_batch_duration_seconds_bucket" in text
    assert 'dataarch_http_requests_total{method="POST",route="/tables/{table}/rows"' in text
    assert "dataarch_pool_connections" in text and "dataarch_pool_waiting" in text
    assert client.get("/metrics").status_code == 401


def test_head_works_where_get_does(client) -> None:
    for path in ("/tables/jobs/rows/1", "/kpis/hires-by-quarter", "/health", "/reports/"):
        head = client.head(path, headers=AUTH)
        get = client.get(path, headers=AUTH)
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_liveness_and_readiness(client) -> None:
    assert client.get("/health/live").json()["status"] == "ok"
    assert client.get("/health/ready").json() == {"status": "ok", "database": "up", "reason": None}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 20_000 + b"]" * 20_000,
        b'[{"employee_id": ' + b"[" * 20_000 + b"]" * 20_000 + b"}]",
        b'[{"employee_id": 1e1000000}]',
        b'[{"employee_id": 1e-1000000}]',
        b'[{"employee_id": 1e131072}]',
    ],
    ids=["nested", "nested-in-a-row", "huge", "tiny", "long-exponent"],
)
def test_hostile_bodies_are_a_4xx(client, body) -> None:
    answer = client.post("/tables/employees/rows", content=body, headers=JSON_AUTH)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_no_answer_names_a_server_path(client, dsn, tmp_path) -> None:
    settings = dataclasses.replace(api_settings(dsn), backup_dir=tmp_path / "backups")
    with TestClient(create_app(settings)) as admin:
        answers = [
            admin.post("/tables/jobs/backups", headers=AUTH),
            admin.get("/tables/jobs/backups", headers=AUTH),
            admin.post("/tables/jobs/restore", headers=AUTH, json={"file": "nope.avro"}),
        ]
    assert all(str(tmp_path) not in a.text for a in answers)


def test_a_request_too_long_to_read_is_a_problem_document(server) -> None:
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = b"GET /tables/jobs/rows/1?" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n"
        sock.sendall(request + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.1 400", b"HTTP/1.1 414")), head
    assert b"application/problem+json" in head and b'"status":' in body


def test_every_503_says_when_to_retry(dsn, tmp_path) -> None:
    settings = dataclasses.replace(api_settings("host=/nonexistent dbname=x user=nobody"))
    with TestClient(create_app(settings)) as client:
        answer = client.post("/tables/jobs/rows", json=[{"job_id": 1, "job_name": "x"}],
                             headers=JSON_AUTH)  # fmt: skip
        ready = client.get("/health/ready")
    assert answer.status_code == ready.status_code == 503
    assert answer.headers["retry-after"] == ready.headers["retry-after"] == "1"
    assert httpx.codes.is_server_error(answer.status_code)


def _readme_table(first_column: str) -> list[list[str]]:
    """The rows of the README's table whose header starts with first_column."""
    lines = (PROJECT / "README.md").read_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"| {first_column} |")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_lists_every_route_with_its_scope() -> None:
    documented = {(row[0], row[1]) for row in _readme_table("route")}
    served = {
        (f"{method.upper()} {path}", op["security"][0]["bearer"][0] if "security" in op else "—")
        for path, item in SCHEMA["paths"].items()
        for method, op in item.items()
    }
    assert documented == served


def test_the_readme_lists_the_error_catalogue() -> None:
    documented = [
        (row[0].split(" ")[0].strip("`"), row[1], row[2], row[3])
        for row in _readme_table("SQLSTATE")
    ]
    catalogue = [
        (entry.code, str(entry.status), entry.title + (" (retry)" if entry.retry else ""),
         str(entry.exit))
        for entry in CATALOGUE
    ]  # fmt: skip
    assert documented == catalogue


def test_the_document_states_the_data_dictionary_and_the_request_id() -> None:
    fields = SCHEMA["components"]["schemas"]["Employee"]["properties"]
    assert fields["hiring_date"]["format"] == "date-time"
    assert (fields["employee_id"]["minimum"], fields["employee_id"]["maximum"]) == (1, 2147483647)
    assert fields["employee_name"]["maxLength"] == 200
    for path, item in SCHEMA["paths"].items():
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", [])]
            assert "X-Request-ID" in names, (method, path)
            for answer in operation["responses"].values():
                assert "X-Request-ID" in answer.get("headers", {}), (method, path)
    listed = SCHEMA["paths"]["/tables/{table}/backups"]["get"]["responses"]["400"]
    assert list(listed["content"]) == ["application/problem+json"]


def test_problems_are_typed_by_their_catalogue_entry(client) -> None:
    ours = client.post("/tables/jobs/rows", content=b"[]", headers=JSON_AUTH).json()
    assert ours["type"] == "urn:dataarch:problem:dat03" and ours["title"].startswith("Batch of")
    litestar = client.get("/nope", headers=AUTH).json()
    assert "type" not in litestar and litestar["title"] == "Not Found"  # about:blank
    redirect = client.get("/reports/", follow_redirects=False)
    assert redirect.status_code == 303 and redirect.content == b""
    assert redirect.headers["location"].startswith("/login?next=")


def test_metrics_say_charset_once_and_carry_the_databases_gauges(client, conn) -> None:
    conn.execute('select ingest_batch(\'{"table": "jobs", "rows": [{"job_id": 0}]}\')')
    answer = client.get("/metrics", headers=AUTH)
    assert answer.headers["content-type"].count("charset") == 1
    assert 'dataarch_open_rejections{table="jobs"} 1.0' in answer.text
    assert 'dataarch_table_rows{table="departments"}' in answer.text
    assert "dataarch_full_backup_age_seconds NaN" in answer.text


def test_csv_answers_are_named_downloads_and_honour_limit(client, conn) -> None:
    kpi = client.get("/kpis/hires-by-quarter?year=2021&format=csv", headers=AUTH)
    assert kpi.headers["content-disposition"] == 'attachment; filename="hires-by-quarter-2021.csv"'
    conn.execute(
        "select ingest_batch('jobs', jsonb_agg(jsonb_build_object('job_id', n, 'job_name', '')))"
        " from generate_series(100, 104) as n"
    )
    limited = client.get("/tables/jobs/rejections?format=csv&limit=2", headers=AUTH)
    assert limited.headers["content-disposition"] == 'attachment; filename="jobs.reject.csv"'
    assert limited.text == "100,\n101,\n"
    everything = client.get("/tables/jobs/rejections?format=csv", headers=AUTH)
    assert everything.text.count("\n") == 5
