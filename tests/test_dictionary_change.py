"""The proof that the data dictionary is data: a copy of the project gets
one new migration, and nothing else. The migration adds a mandatory column
with a CHECK (its existing rows take a default) to jobs, and a fourth table
referencing jobs; `db init` applies it to a database of today's
release holding the real data. Then every path takes both, as a user runs
it, from the copy: psql, migrate, HTTP (rows and a CSV upload), the reject
file, backup, verify and restore. (The README's "Adding a column" is this
migration.)"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from conftest import (
    AUTH,
    JSON_AUTH,
    PROJECT,
    SEED_DATA,
    cli_env,
    dataarch,
    requires_seed_data,
)
from psycopg.types.json import Jsonb

from cli import served as serving

pytestmark = requires_seed_data()

MIGRATION = "schema/999_change_proof.sql"
CHANGE = """
-- a mandatory column with a CHECK; the rows already there take the default
-- (one subcommand an ALTER TABLE: Citus refuses a constraint beside another)
alter table jobs add column job_level integer not null default 1;
alter table jobs add constraint jobs_job_level_positive check (job_level > 0);
insert into dictionary_columns (table_name, column_name, csv_position, rule)
values ('jobs', 'job_level', 3, 'id');

-- a fourth table, whose rows name a job
create table trainings (
    training_id integer not null,
    training_name text not null,
    job_id integer not null,
    batch_id bigint,
    batch_position bigint,
    constraint trainings_pkey primary key (training_id),
    constraint trainings_id_positive check (training_id > 0),
    constraint trainings_name_not_blank check (training_name <> ''),
    constraint trainings_name_trimmed
    check (training_name = btrim(training_name, E' \\t\\r\\n')),
    constraint trainings_name_max_length check (char_length(training_name) <= 200),
    constraint trainings_job_id_fkey foreign key (job_id) references jobs (job_id)
);
insert into dictionary_tables (table_name, load_order, file_names)
values ('trainings', 4, array['trainings.csv']);
insert into dictionary_columns (table_name, column_name, csv_position, rule) values
('trainings', 'training_id', 1, 'id'),
('trainings', 'training_name', 2, 'name'),
('trainings', 'job_id', 3, 'id');
"""


def in_copy(copy: Path, dsn: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`dataarch ...` run from the copy, as a user there runs it."""
    return dataarch(dsn, *args, timeout=300, cwd=copy, DATAARCH_BACKUP_DIR=str(tmp / "backups"))


def changed_copy(copy: Path) -> Path:
    """The project's files (as git knows them) at `copy`, plus the migration."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (PROJECT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, copy / name)
    (copy / MIGRATION).write_text(CHANGE)
    return copy


def done(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def changed(test_cluster, tmp_path_factory) -> Iterator[dict]:  # noqa: ANN001
    """A database of today's release holding the real data, then the copy of
    the project with the one new migration applied to it by `db init`."""
    tmp = tmp_path_factory.mktemp("change")
    with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
        admin.execute("create database change_proof")
    dsn = test_cluster.conninfo("change_proof")
    done(in_copy(PROJECT, dsn, "db", "init", tmp=tmp))
    done(in_copy(PROJECT, dsn, "migrate", "--csv-dir", str(SEED_DATA / "globant"), tmp=tmp))
    with psycopg.connect(dsn) as conn:
        before = {
            t: conn.execute(f"select count(*) from {t}").fetchone()[0]
            for t in ("departments", "jobs", "employees")
        }
    copy = changed_copy(tmp / "project")
    init = done(in_copy(copy, dsn, "db", "init", tmp=tmp))
    yield {"dsn": dsn, "copy": copy, "tmp": tmp, "before": before, "init": init}
    with psycopg.connect(test_cluster.conninfo(), autocommit=True) as admin:
        admin.execute("drop database if exists change_proof with (force)")


def run(changed: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return in_copy(changed["copy"], changed["dsn"], *args, tmp=changed["tmp"])


def query(changed: dict, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(changed["dsn"], autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def test_the_migration_keeps_the_real_data(changed) -> None:
    assert "1 migration(s)" in changed["init"]
    for table, rows in changed["before"].items():
        assert query(changed, f"select count(*) from {table}") == [(rows,)]
    assert query(changed, "select distinct job_level from jobs") == [(1,)]
    dictionary = query(changed, "select data_dictionary()")[0][0]
    assert [t["table"] for t in dictionary] == ["departments", "jobs", "employees", "trainings"]
    assert [c["name"] for c in dictionary[1]["columns"]] == ["job_id", "job_name", "job_level"]


def test_psql_takes_the_new_column_and_table_and_names_the_new_constraints(changed) -> None:
    job = query(changed, "select min(job_id) from jobs")[0][0]
    jobs = query(
        changed, "select ingest_batch('jobs', %s)",
        Jsonb([
            {"job_id": 9001, "job_name": "Level three", "job_level": 3},
            {"job_id": 9002, "job_name": "Level zero", "job_level": 0},
            {"job_id": 9003, "job_name": "No level"},
        ]),
    )[0][0]  # fmt: skip
    assert (jobs["inserted"], jobs["rejected"]) == (1, 2)
    trainings = query(
        changed, "select ingest_batch('trainings', %s)",
        Jsonb([[1, "Safety", job], [2, "Nobody's", 999999999], [3, " ", job]]),
    )[0][0]  # fmt: skip
    assert (trainings["inserted"], trainings["rejected"]) == (1, 2)
    assert query(changed, "select job_level from jobs where job_id = 9001") == [(3,)]
    logged = query(
        changed,
        "select table_name, record_id, reason_code, field, constraint_name from ingest_errors"
        " where batch_id = any(%s) order by error_id",
        [jobs["batch_id"], trainings["batch_id"]],
    )
    assert logged == [
        ("jobs", 9002, "out_of_range", "job_level", "jobs_job_level_positive"),
        ("jobs", 9003, "missing_field", "job_level", None),
        ("trainings", 2, "unknown_job", "job_id", "trainings_job_id_fkey"),
        ("trainings", 3, "blank_string", "training_name", "trainings_name_not_blank"),
    ]


def test_migrate_reads_the_new_csv_layout(changed) -> None:
    job = query(changed, "select min(job_id) from jobs")[0][0]
    folder = changed["tmp"] / "csv"
    folder.mkdir()
    (folder / "jobs.csv").write_text("9101,Lead,4\n9102,Broken level,-1\n9103,Two fields\n")
    (folder / "trainings.csv").write_text(f"101,First aid,{job}\n102,Ghost,0\n")
    out = done(run(changed, "migrate", "--csv-dir", str(folder)))
    assert "trainings" in out
    assert query(changed, "select job_id, job_level from jobs where job_id > 9100") == [(9101, 4)]
    assert query(changed, "select training_id, job_id from trainings where training_id > 100") == [
        (101, job)
    ]
    logged = query(
        changed,
        "select table_name, line_number, reason_code, constraint_name from ingest_errors"
        " where source_file like %s order by table_name, line_number",
        "%.csv",
    )
    assert ("jobs", 2, "out_of_range", "jobs_job_level_positive") in logged
    assert ("jobs", 3, "malformed_line", None) in logged
    assert ("trainings", 2, "out_of_range", None) in logged


@pytest.fixture(scope="module")
def served(changed) -> Iterator[str]:  # noqa: ANN001
    """`dataarch serve` from the copy."""
    env = {**cli_env(changed["dsn"]), "DATAARCH_BACKUP_DIR": str(changed["tmp"] / "backups")}
    proc, url = serving.start_server(env, cwd=changed["copy"])
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_http_takes_rows_and_a_csv_file_of_the_new_shapes(changed, served) -> None:
    job = query(changed, "select max(job_id) from jobs")[0][0]
    rows = httpx.post(
        f"{served}/tables/trainings/rows", headers=JSON_AUTH, timeout=30,
        json=[{"training_id": 201, "training_name": "Welcome", "job_id": job},
              {"training_id": 202, "training_name": "Welcome", "job_id": -5}],
    )  # fmt: skip
    assert rows.status_code == 200, rows.text
    assert (rows.json()["inserted"], rows.json()["rejected"]) == (1, 1)
    upload = httpx.post(
        f"{served}/tables/jobs/csv", content="9201,Chief,7\n9202,Zero,0\n", timeout=30,
        headers={**AUTH, "Content-Type": "text/csv"},
    )  # fmt: skip
    assert upload.status_code == 200, upload.text
    assert (upload.json()["inserted"], upload.json()["rejected"]) == (1, 1)
    got = httpx.get(f"{served}/tables/jobs/rows/9201", headers=AUTH, timeout=30)
    assert got.json()["job_level"] == 7, got.text
    dictionary = httpx.get(f"{served}/dictionary", headers=AUTH, timeout=30).json()
    assert dictionary[-1]["table"] == "trainings"
    rejects = httpx.get(
        f"{served}/tables/trainings/rejections", timeout=30,
        headers={**AUTH, "Accept": "text/csv"},
    )  # fmt: skip
    assert rejects.status_code == 200, rejects.text
    assert "202,Welcome,-5" in rejects.text.splitlines(), rejects.text


def test_the_reject_file_holds_the_new_tables_rows(changed, served) -> None:
    out = changed["tmp"] / "rejects"
    done(run(changed, "rejections", "export", "trainings", "--out", str(out), "--url", served))
    lines = list(csv.reader(io.StringIO((out / "trainings.reject.csv").read_text())))
    assert "unknown_job" in (out / "trainings.reject.log").read_text()
    assert ["2", "Nobody's", "999999999"] in lines, lines  # unknown_job, by psql
    assert ["102", "Ghost", "0"] in lines, lines  # out_of_range, from trainings.csv


def test_backup_verify_and_restore_round_trip_both(changed) -> None:
    shape = {
        "jobs": "select job_id, job_name, job_level from jobs order by 1",
        "trainings": "select training_id, training_name, job_id from trainings order by 1",
    }
    before = {t: query(changed, sql) for t, sql in shape.items()}
    assert before["trainings"] and any(r[2] != 1 for r in before["jobs"])
    done(run(changed, "backup"))
    done(run(changed, "verify"))
    query(changed, "delete from trainings")
    query(changed, "update jobs set job_level = job_level + 10")
    for table in shape:
        done(run(changed, "restore", table))
    assert {t: query(changed, sql) for t, sql in shape.items()} == before


def test_the_data_quality_report_counts_the_new_tables_rejections(changed) -> None:
    out = changed["tmp"] / "reports"
    done(run(changed, "report", "--out", str(out)))
    page = (out / "data-quality.html").read_text()
    rejected, still_open = query(
        changed,
        "select count(*), count(*) filter (where resolved_at is null and closed_at is null)"
        " from ingest_errors where table_name = 'trainings'",
    )[0]
    assert rejected > 0
    row = (f'<tr><td class="code">trainings</td><td class="n">{rejected}</td>'
           f'<td class="n">{still_open}</td></tr>')  # fmt: skip
    assert row in page, page


def test_the_served_openapi_document_describes_both(changed, served) -> None:
    document = httpx.get(f"{served}/schema/openapi.json", timeout=30).json()
    rows = document["components"]["schemas"]
    assert rows["Training"]["required"] == ["training_id", "training_name", "job_id"]
    assert rows["Job"]["properties"]["job_level"]["minimum"] == 1
    post = document["paths"]["/tables/{table}/rows"]["post"]
    table = next(p for p in post["parameters"] if p["name"] == "table")
    assert table["schema"]["enum"] == ["departments", "jobs", "employees", "trainings"]
    refs = {i.get("$ref") for i in post["requestBody"]["content"]["application/json"]["schema"]
            ["items"]["oneOf"]}  # fmt: skip
    assert "#/components/schemas/Training" in refs
