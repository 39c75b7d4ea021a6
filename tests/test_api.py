"""The HTTP service through Litestar's test client: routes, errors, auth, OpenAPI."""

from __future__ import annotations

import json

import pytest
from conftest import AUTH, JSON_AUTH, api_settings, employee, load_reference_rows
from litestar.testing import TestClient

from api.tables import MAX_BODY_BYTES
from app import create_app


@pytest.fixture
def client(conn, dsn):
    load_reference_rows(conn)
    with TestClient(create_app(api_settings(dsn))) as test_client:
        yield test_client


def post(client: TestClient, table: str, body: object, headers: dict | None = None, **params):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(
        f"/tables/{table}/rows", content=content, headers=headers or JSON_AUTH, params=params
    )


def test_post_rows_inserts_and_reports_rejections(client, conn) -> None:
    response = post(client, "employees", [employee(1), employee(2, employee_name="")])
    assert response.status_code == 200
    body = response.json()
    assert (body["submitted"], body["inserted"], body["rejected"]) == (2, 1, 1)
    assert body["rejections"] == [
        {
            "index": 1,
            "reason_code": "blank_string",
            "field": "employee_name",
            "message": "employee_name must not be blank",
        }
    ]
    last = "select source from ingest_batches order by batch_id desc limit 1"
    assert conn.execute(last).fetchone() == ("api",)


def test_atomic_mode(client, conn) -> None:
    response = post(client, "employees", [employee(1), employee(2, job_id=0)], mode="atomic")
    assert response.status_code == 200
    assert response.json()["inserted"] == 0
    assert conn.execute("select count(*) from employees").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("table", "body", "headers", "status", "detail"),
    [
        ("nope", [employee(1)], None, 404, "unknown table 'nope'"),
        ("employees;DROP TABLE jobs", [employee(1)], None, 404, "unknown table"),
        ("employees", b"[{not json", None, 400, "invalid input syntax for type json"),
        ("employees", b"\xff\xfe", None, 400, "not UTF-8"),
        ("employees", {"rows": []}, None, 400, "must be a JSON array"),
        ("employees", [], None, 422, "this one has 0"),
        ("jobs", [{"job_id": 1, "job_name": "x"}] * 1001, None, 422, "this one has 1001"),
        ("jobs", [{"job_id": 1}], {**AUTH, "Content-Type": "text/csv"}, 415, "application/json"),
        ("jobs", [{"job_id": 1}], {"Content-Type": "application/json"}, 401, "Bearer"),
        ("jobs", [{"job_id": 1}], {**JSON_AUTH, "Authorization": "Bearer nope"}, 401, "Bearer"),
        ("jobs", [{"job_id": 1}], {**JSON_AUTH, "Authorization": "Basic x"}, 401, "Bearer"),
    ],
)
def test_bad_requests_get_a_problem_document(client, table, body, headers, status, detail) -> None:
    response = post(client, table, body, headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert detail in problem["detail"]
    assert "Traceback" not in response.text


def test_injection_attempt_leaves_tables_intact(client, conn) -> None:
    post(client, "jobs;DROP TABLE jobs", [{"job_id": 9, "job_name": "x"}])
    assert conn.execute("select count(*) from jobs").fetchone()[0] == 3


def test_oversized_body_is_413(client) -> None:
    big = b"[" + b'{"job_id": 1, "job_name": "' + b"x" * MAX_BODY_BYTES + b'"}]'
    response = post(client, "jobs", big)
    assert response.status_code == 413
    assert response.json()["status"] == 413


def test_largest_legitimate_batch_fits(client) -> None:
    rows = [employee(i, employee_name="\u00e9" * 200) for i in range(1, 1001)]
    body = json.dumps(rows).encode()  # every é escaped as \u00e9: the worst case
    assert len(body) < MAX_BODY_BYTES
    assert post(client, "employees", body).json()["inserted"] == 1000


def test_bad_mode_is_400(client) -> None:
    assert post(client, "jobs", [{"job_id": 9, "job_name": "x"}], mode="all").status_code == 400


def test_idempotent_replay(client, conn) -> None:
    headers = {**JSON_AUTH, "Idempotency-Key": "batch-0001"}
    first = post(client, "employees", [employee(1), employee(2, job_id=99)], headers)
    again = post(client, "employees", [employee(1), employee(2, job_id=99)], headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}
    counts = conn.execute(
        "select (select count(*) from ingest_batches where table_name = 'employees'),"
        " (select count(*) from ingest_errors), (select count(*) from employees)"
    ).fetchone()
    assert counts == (1, 1, 1)
    other = post(client, "employees", [employee(3)], headers)
    assert other.status_code == 422
    assert "already used for a different request" in other.json()["detail"]


def test_idempotency_keys_are_forgotten_after_24_hours(client, conn) -> None:
    old = {**JSON_AUTH, "Idempotency-Key": "old-key"}
    assert post(client, "employees", [employee(1)], old).status_code == 200
    other = {**JSON_AUTH, "Idempotency-Key": "other"}
    assert post(client, "employees", [employee(2)], other).status_code == 200
    conn.execute("update idempotency_keys set created_at = now() - interval '25 hours'")
    reused = post(client, "employees", [employee(3)], old)  # another body: new again
    assert reused.status_code == 200 and reused.json()["inserted"] == 1
    keys = conn.execute("select idempotency_key from idempotency_keys").fetchall()
    assert keys == [("old-key",)]  # the expired "other" was pruned on the way


def test_get_row(client) -> None:
    post(client, "employees", [employee(7)])
    found = client.get("/tables/employees/rows/7", headers=AUTH)
    assert found.status_code == 200
    assert found.json() == {
        "employee_id": 7,
        "employee_name": "Marcelo Gonzalez",
        "hiring_date": "2021-07-27T16:02:08+00:00",
        "department_id": 1,
        "job_id": 2,
    }
    assert client.get("/tables/employees/rows/8", headers=AUTH).status_code == 404
    assert client.get("/tables/employees/rows/abc", headers=AUTH).status_code == 400
    assert client.get("/tables/employees/rows/99999999999", headers=AUTH).status_code == 400
    assert client.get("/tables/nope/rows/1", headers=AUTH).status_code == 404


def test_rejections_newest_first_paginated(client) -> None:
    first = post(client, "jobs", [{"job_id": 0, "job_name": "a"}, {"job_id": 5}]).json()
    second = post(client, "jobs", [{"job_id": 6, "job_name": " "}]).json()
    page = client.get("/tables/jobs/rejections", params={"limit": 2}, headers=AUTH).json()
    assert page["total"] == 3
    assert [i["batch_id"] for i in page["items"]] == [second["batch_id"], first["batch_id"]]
    assert page["items"][0]["raw_row"] == {"job_id": 6, "job_name": " "}
    rest = client.get("/tables/jobs/rejections", params={"offset": 2}, headers=AUTH).json()
    assert [i["reason_code"] for i in rest["items"]] == ["out_of_range"]
    one = client.get(
        "/tables/jobs/rejections", params={"batch_id": second["batch_id"]}, headers=AUTH
    ).json()
    assert [i["reason_code"] for i in one["items"]] == ["blank_string"]
    bad = client.get("/tables/jobs/rejections", params={"limit": 0}, headers=AUTH)
    assert bad.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/tables/jobs/rows"),
        ("GET", "/tables/jobs/rows/1"),
        ("GET", "/tables/jobs/rejections"),
    ],
)
def test_every_data_route_needs_the_token(client, method, path) -> None:
    assert client.request(method, path).status_code == 401
    wrong = {"Authorization": "Bearer test-token-but-longer"}
    assert client.request(method, path, headers=wrong).status_code == 401


def test_health_and_openapi_need_no_token(client) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": "up", "reason": None}
    spec = client.get("/schema/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/tables/{table}/rows",
        "/tables/{table}/rows/{row_id}",
        "/tables/{table}/rejections",
        "/health",
    }
    post_op = spec["paths"]["/tables/{table}/rows"]["post"]
    assert post_op["requestBody"]["content"]["application/json"]["schema"]["maxItems"] == 1000
    assert {"200", "400", "401", "404", "413", "415", "422", "503"} <= set(post_op["responses"])


def test_app_refuses_to_start_without_a_token(dsn) -> None:
    with pytest.raises(RuntimeError, match="DATAARCH_API_TOKEN"):
        create_app(api_settings(dsn, tokens=()))
