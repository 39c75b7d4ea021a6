"""Tokens issued to one client each and revoked at once by every API
process; sign-in sessions the server can end; guessing slowed to a crawl;
and no configured token disabling another."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import TOKEN, api_settings, dataarch, load_reference_rows
from litestar.testing import TestClient

from api.security import SESSION_COOKIE, Failures
from app import create_app
from dataarch.settings import ApiToken, Settings


def _issue(dsn: str, name: str, scope: str) -> str:
    made = dataarch(dsn, "token", "create", name, "--scope", scope)
    assert made.returncode == 0, made.stderr
    assert "shown this once" in made.stdout
    return made.stdout.strip().splitlines()[-1]


def test_an_issued_token_works_for_its_scope_until_revoked_everywhere(conn, dsn) -> None:
    load_reference_rows(conn)
    secret = _issue(dsn, "etl-job", "ingest")
    assert secret not in str(conn.execute("select * from api_tokens").fetchall())  # hash only
    bearer = {"Authorization": f"Bearer {secret}"}
    # two apps: two API processes, each asking the database
    with (
        TestClient(create_app(api_settings(dsn))) as one,
        TestClient(create_app(api_settings(dsn))) as two,
    ):
        for client in (one, two):
            assert client.get("/tables/jobs/rows/1", headers=bearer).status_code == 200
            rows = client.post("/tables/jobs/rows", json=[{"job_id": 50, "job_name": "x"}],
                               headers=bearer)  # fmt: skip
            assert rows.status_code == 200
            assert client.post("/backups", headers=bearer).status_code == 403  # admin's
        listed = dataarch(dsn, "token", "list")
        assert "etl-job" in listed.stdout and "ingest" in listed.stdout and "live" in listed.stdout
        revoked = dataarch(dsn, "token", "revoke", "etl-job")
        assert revoked.returncode == 0, revoked.stderr
        for client in (one, two):
            assert client.get("/tables/jobs/rows/1", headers=bearer).status_code == 401
    assert "revoked" in dataarch(dsn, "token", "list").stdout


def test_token_mistakes_are_clear(dsn) -> None:
    _issue(dsn, "twice", "read")
    again = dataarch(dsn, "token", "create", "twice", "--scope", "read")
    assert again.returncode == 1 and "exists already" in again.stderr
    unknown = dataarch(dsn, "token", "revoke", "nobody")
    assert unknown.returncode != 0 and 'no token named "nobody"' in unknown.stderr
    no_scope = dataarch(dsn, "token", "create", "x")
    assert no_scope.returncode == 2 and "--scope" in no_scope.stderr
    viewer = dataarch(dsn, "token", "create", "board", "--scope", "viewer")
    assert viewer.returncode == 0 and "(view scope)" in viewer.stdout


def _sign_in(client: TestClient, token: str) -> str:
    answer = client.post("/login", data={"token": token, "next": "/reports/"},
                         follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/reports/", answer.text
    return answer.cookies[SESSION_COOKIE]


def test_signing_out_ends_the_session_on_the_server(conn, dsn) -> None:
    load_reference_rows(conn)
    with TestClient(create_app(api_settings(dsn))) as client:
        cookie = _sign_in(client, TOKEN)
        assert (
            client.get("/reports/", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}).status_code
            == 200
        )
        client.post("/logout", follow_redirects=False)
        replayed = client.get("/reports/", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
                              follow_redirects=False)  # fmt: skip
        assert replayed.status_code == 303 and replayed.headers["location"].startswith("/login")
    stored = conn.execute("select count(*) from api_sessions where closed_at is not null")
    assert stored.fetchone()[0] == 1


def test_revoking_a_token_ends_its_sessions(conn, dsn) -> None:
    load_reference_rows(conn)
    secret = _issue(dsn, "board-member", "view")
    with TestClient(create_app(api_settings(dsn))) as client:
        cookie = _sign_in(client, secret)
        assert (
            client.get("/reports/", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}).status_code
            == 200
        )
        assert (
            "1 sign-in session(s) ended" in dataarch(dsn, "token", "revoke", "board-member").stdout
        )
        ended = client.get(
            "/reports/", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}, follow_redirects=False
        )
        assert ended.status_code == 303


def test_guessing_is_refused_after_twenty_failures(conn, dsn) -> None:
    with TestClient(create_app(api_settings(dsn))) as client:
        answers = [
            client.get("/tables/jobs/rows/1", headers={"Authorization": f"Bearer guess-{n}"})
            for n in range(25)
        ]
        assert [a.status_code for a in answers] == [401] * 20 + [429] * 5
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
        assert answers[-1].headers["content-type"].startswith("application/problem+json")
        # a right guess now looks like every other answer
        right = client.get("/tables/jobs/rows/1", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 429
        sign_in = client.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert sign_in.status_code == 429


def test_wrong_sign_ins_count_too(conn, dsn) -> None:
    with TestClient(create_app(api_settings(dsn))) as client:
        for n in range(20):
            wrong = client.post("/login", data={"token": f"x{n}"}, follow_redirects=False)
            assert wrong.headers["location"].startswith("/login?failed=true")
        assert client.post("/login", data={"token": "x"}, follow_redirects=False).status_code == 429


def test_the_failure_book_is_bounded_and_forgets() -> None:
    failures = Failures(limit=3, window=60, addresses=100)
    for n in range(10_000):
        failures.record(f"10.0.{n // 256}.{n % 256}", now=0)
    assert len(failures._seen) == 100
    for _ in range(3):
        failures.record("attacker", now=0)
    assert failures.wait("attacker", now=1) == 59
    assert failures.wait("attacker", now=60.5) == 0


def test_a_viewer_token_never_disables_the_generated_admin_token(tmp_path) -> None:
    only_viewer = Settings.from_env(
        {"DATAARCH_VIEWER_TOKEN": "viewer-secret", "DATAARCH_VAR_DIR": str(tmp_path)}
    ).with_generated_token()
    assert {t.scope for t in only_viewer.tokens} == {"view", "admin"}
    kept = (tmp_path / "api-token").read_text().strip()
    assert only_viewer.api_tokens == (kept,)
    # a configured admin token beside the kept one: both work
    both = Settings.from_env(
        {"DATAARCH_API_TOKEN": "mine", "DATAARCH_VAR_DIR": str(tmp_path)}
    ).with_generated_token()
    assert set(both.api_tokens) == {"mine", kept}
    # with an admin token configured and none kept yet, none is made
    fresh = tmp_path / "fresh"
    made = Settings.from_env({"DATAARCH_API_TOKEN": "mine", "DATAARCH_VAR_DIR": str(fresh)})
    assert made.with_generated_token().api_tokens == ("mine",)
    assert not (fresh / "api-token").exists()


@pytest.mark.parametrize("scope", ["view", "read"])
def test_a_narrow_issued_token_cannot_write(conn, dsn, scope) -> None:
    secret = _issue(dsn, f"narrow-{scope}", scope)
    settings = dataclasses.replace(api_settings(dsn), tokens=(ApiToken("other", "admin"),))
    with TestClient(create_app(settings)) as client:
        answer = client.post("/tables/jobs/rows", json=[{"job_id": 9, "job_name": "x"}],
                             headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    assert answer.status_code == 403
