"""Least privilege that holds: the API's database role cannot make rows of its
own a table's content, and every route refuses tokens without its scope."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from conftest import TOKEN, api_settings, load_reference_rows
from litestar.testing import TestClient

from api.security import require_token
from app import create_app
from backup import backup_tables, restore_table
from dataarch.settings import SCOPES, ApiToken


def jobs(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("select * from jobs order by job_id").fetchall()


def test_the_api_role_cannot_restore_rows_it_staged_itself(conn, dsn) -> None:
    load_reference_rows(conn)
    before = jobs(conn)
    with psycopg.connect(dsn.replace("user=postgres", "user=dataarch_api")) as api:
        staging = api.execute("select restore_begin('jobs')").fetchone()[0]
        api.execute(f"insert into pg_temp.{staging} values (66, 'Forged')")
        # the public checksum of the rows it staged, as anyone can compute it
        rows, checksum = api.execute(
            "select count(*), mod(sum(hashtextextended(t::text, 0)::numeric),"
            " 18446744073709551616)::text from (values (66, 'Forged')) as t (job_id, job_name)"
        ).fetchone()
        with pytest.raises(psycopg.Error) as refused:
            api.execute("select restore_finish('jobs', %s, %s, 'forged.avro')", (rows, checksum))
        assert refused.value.sqlstate == "DAT09"
        assert "no backup of this database recorded" in str(refused.value)
    assert jobs(conn) == before


def test_the_api_role_restores_what_a_backup_recorded(conn, dsn, tmp_path) -> None:
    load_reference_rows(conn)
    before = jobs(conn)
    with psycopg.connect(dsn.replace("user=postgres", "user=dataarch_api")) as api:
        (made,) = backup_tables(api, ["jobs"], tmp_path).files
        conn.execute("update jobs set job_name = 'changed'")
        done = restore_table(api, "jobs", tmp_path / "jobs" / made.file, catalogued_only=True)
    assert (done.rows, done.changed) == (3, 3)
    assert jobs(conn) == before
    recorded = conn.execute("select table_name, row_count, recorded_by from backup_catalog")
    assert recorded.fetchall() == [("jobs", 3, "dataarch_api")]


@pytest.mark.parametrize("statement", [
    "insert into backup_catalog (set_name, table_name, file_name, row_count, checksum,"
    " keyed_checksum) values ('x', 'jobs', 'x', 1, '1', '1')",
    "select * from backup_key",
    "select * from _keyed_checksums('jobs')",
    "select _restore_tables('{}', false)",
])  # fmt: skip
def test_the_api_role_cannot_write_the_catalogue_or_read_its_key(dsn, statement) -> None:
    with (
        psycopg.connect(dsn.replace("user=postgres", "user=dataarch_api")) as api,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        api.execute(statement)


# -- token scopes ------------------------------------------------------------------------

_APP = create_app(dataclasses.replace(api_settings("host=/nonexistent"), tokens=(
    ApiToken("x", "admin"),
)))  # fmt: skip
ROUTES = sorted(  # sorted: xdist workers must collect the same list
    (method, route.path, handler.opt.get("scope"))
    for route in _APP.routes
    for handler in route.route_handlers
    if require_token in handler.resolve_guards()  # not /health, /schema, /login
    for method in handler.http_methods - {"OPTIONS", "HEAD"}
)
PUBLIC = sorted(
    route.path
    for route in _APP.routes
    for handler in route.route_handlers
    if require_token not in handler.resolve_guards() and "OPTIONS" not in handler.http_methods
)


def test_only_probes_the_schema_and_the_sign_in_are_public() -> None:
    assert PUBLIC and all(
        path.startswith(("/health", "/schema")) or path in ("/login", "/logout") for path in PUBLIC
    ), PUBLIC


def test_every_route_declares_its_scope() -> None:
    assert ROUTES and all(scope in SCOPES for _, _, scope in ROUTES), ROUTES
    by_path = {(m, p): s for m, p, s in ROUTES}
    assert by_path[("POST", "/tables/{table:str}/rows")] == "ingest"
    assert by_path[("GET", "/tables/{table:str}/rows/{row_id:str}")] == "read"
    assert by_path[("POST", "/tables/{table:str}/restore")] == "admin"
    assert by_path[("POST", "/backups")] == "admin"


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_each_route_refuses_tokens_without_its_scope(conn, dsn, method, path, scope) -> None:
    tokens = tuple(ApiToken(f"{TOKEN}-{s}", s) for s in SCOPES)
    url = (
        path.replace("{table:str}", "jobs").replace("{row_id:str}", "1")
        .replace("{page:str}", "index.html").replace("{batch_id:int}", "1")
    )  # fmt: skip
    with TestClient(create_app(api_settings(dsn, tokens=tokens))) as client:
        for token in tokens:
            answer = client.request(method, url, headers={"Authorization": f"Bearer {token.value}"})
            if token.allows(scope):
                assert answer.status_code not in (401, 403), (token.scope, answer.text)
            else:
                assert answer.status_code == 403, (token.scope, answer.status_code)
                assert f"needs {scope}" in answer.json()["detail"]
