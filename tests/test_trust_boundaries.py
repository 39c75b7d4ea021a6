"""Owner code never runs what a caller planted. Every SECURITY DEFINER
function the API role may execute, found in the catalogue, is called after
objects were planted in the session's temporary schema under every name a
function of ours reads there (its staging tables) and every name of our
tables and functions (shadows): a view whose WHERE calls the planter's
function, a table with triggers, and functions. The planter is a role that
may create temporary objects (the API role itself may not: that is the
first wall, tested below); its code counts each run in a sequence, which no
rollback undoes. It never runs, and no role gains an attribute.

A SECURITY DEFINER function added tomorrow fails test_every_definer_is_covered
until CALLS says how to call it; a privilege of the API role added tomorrow
fails test_the_api_role_has_only_the_documented_privileges until
api_role_allowed() (procedures/080_trust.sql) documents it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

API = "dataarch_api"
PATH = "pg_catalog, public, pg_temp"
BATCH = '[{"job_id": 7, "job_name": "Planted?"}]'
# How the API role calls each definer function it may execute (one statement each).
CALLS: dict[str, str] = {
    "ingest_batch(text,jsonb,text,text,text)": (
        f"select ingest_batch('jobs', '{BATCH}', 'per_row', 'api')"
    ),
    "ingest_batch(jsonb)": f"""select ingest_batch('{{"table": "jobs", "rows": {BATCH}}}')""",
    "ingest_batch_json(text,text,text,text,text,text)": (
        f"select ingest_batch_json('jobs', '{BATCH}', 'per_row', 'api', 'key-1')"
    ),
    "ready_to_ingest()": "select ready_to_ingest()",
    "csv_begin(text)": "select csv_begin('jobs')",
    "judge_csv_lines(text,text,integer[])": "select judge_csv_lines('jobs', ',')",
    "ingest_csv_lines(text,text,text,text,bigint,boolean)": (
        "select ingest_csv_lines('jobs', 'planted.csv', 'abc', ',')"
    ),
    "close_rejections(bigint[],text,text)": "select close_rejections('{1}', 'a note')",
    "backup_set_begin(text,text[],bigint)": "select backup_set_begin('set', '{jobs}', 0)",
    "backup_record(text,text,text)": "select backup_record('set', 'jobs', 'jobs-set.avro')",
    "restore_begin(text)": "select restore_begin('jobs')",
    "restore_finish(text,bigint,text,text,jsonb,boolean)": (
        "select restore_finish('jobs', 0, '0', 'jobs-set.avro')"
    ),
    "lock_holders(regclass,bigint)": "select lock_holders('jobs', 1)",
    "revert_batch(bigint,boolean)": "select revert_batch(1, true)",
    "api_token_scope(text)": "select api_token_scope(repeat('0', 64))",
    "api_session_open(text,text,integer)": "select api_session_open('s', 't', 60)",
    "api_session_valid(text)": "select api_session_valid('s')",
    "api_session_close(text)": "select api_session_close('s')",
}

DEFINERS = """
select p.oid::regprocedure::text from pg_proc as p
where p.pronamespace = 'public'::regnamespace and p.prosecdef
order by 1
"""


def definers(conn: psycopg.Connection, executable_by: str | None = None) -> list[str]:
    found = conn.execute(DEFINERS).fetchall()
    names = [name for (name,) in found]
    if executable_by:
        names = [
            n
            for n in names
            if conn.execute(
                "select has_function_privilege(%s, %s::regprocedure, 'execute')",
                (executable_by, n),
            ).fetchone()[0]
        ]
    return names


def test_every_definer_is_covered(conn) -> None:
    assert set(definers(conn, API)) == set(CALLS)


def test_every_definer_pins_pg_temp_last_and_is_not_public(conn) -> None:
    for name in definers(conn):
        config = conn.execute(
            "select proconfig from pg_proc where oid = %s::regprocedure", (name,)
        ).fetchone()[0]
        assert f"search_path={PATH}" in (config or []), name
        public = conn.execute(
            "select has_function_privilege('public', %s::regprocedure, 'execute')", (name,)
        ).fetchone()[0]
        assert not public, f"{name} is executable by PUBLIC"


def test_every_function_that_reads_anything_pins_pg_temp_last(conn) -> None:
    """A function without a SET clause runs with its caller's search_path:
    only immutable SQL expressions (inlined, reading no table) may."""
    loose = conn.execute(
        "select p.oid::regprocedure::text, p.proconfig, p.provolatile, l.lanname from pg_proc p"
        " join pg_language l on l.oid = p.prolang"
        " where p.pronamespace = 'public'::regnamespace"
        " and not coalesce(p.proconfig @> array[%s], false)",
        (f"search_path={PATH}",),
    ).fetchall()
    offenders = [n for n, config, vol, lang in loose if config or vol != "i" or lang != "sql"]
    assert offenders == []


def test_the_api_role_may_create_nothing(dsn) -> None:
    """The first wall: no temporary object, no object in public."""
    with psycopg.connect(dsn.replace("user=postgres", f"user={API}"), autocommit=True) as api:
        for statement in (
            "create temp table planted (x int)",
            "create temp view planted as select 1",
            "create function pg_temp.planted() returns int language sql as 'select 1'",
            "create table public.planted (x int)",
            "create view public.planted as select 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                api.execute(statement)


def test_the_api_role_has_only_the_documented_privileges(conn) -> None:
    findings = conn.execute("select * from api_role_audit()").fetchall()
    assert findings == []
    attributes = conn.execute(
        "select rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
        " from pg_roles where rolname = %s",
        (API,),
    ).fetchone()
    assert attributes == (False,) * 5


# -- planting ---------------------------------------------------------------------------


@pytest.fixture
def planter(conn) -> Iterator[str]:
    """A role that may create temporary objects, and a sequence its code counts in."""
    role = f"planter_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
    conn.execute(
        sql.SQL("grant temporary on database {} to {}").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(role)
        )
    )
    conn.execute("create sequence public.trust_breach")
    conn.execute("grant usage on sequence public.trust_breach to public")
    yield role
    conn.execute("drop sequence public.trust_breach")
    conn.execute(
        sql.SQL("revoke all on database {} from {}").format(
            sql.Identifier(conn.info.dbname), sql.Identifier(role)
        )
    )
    conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def staged_names(conn: psycopg.Connection) -> list[str]:
    """Every name a function of ours reads or makes in pg_temp, from their
    source: `pg_temp.name`, and `pg_temp.prefix_` || a table a backup holds."""
    sources = conn.execute(
        "select string_agg(prosrc, ' ') from pg_proc where pronamespace = 'public'::regnamespace"
    ).fetchone()[0]
    found = set(re.findall(r"pg_temp\.(\w+)", sources))
    tables = conn.execute("select _backup_tables()").fetchone()[0]
    names = {n for n in found if not n.endswith("_")}
    names |= {p + t for p in found if p.endswith("_") for t in tables}
    return sorted(names)


def shapes(conn: psycopg.Connection) -> dict[str, list[tuple[str, str]]]:
    """Columns of every name to plant: the real staging tables, as our
    functions make them, and every relation of ours (shadows)."""
    names = staged_names(conn)
    with conn.transaction(force_rollback=True):
        conn.execute("select csv_begin('jobs'), _prepare_judged_rows()")
        for table in conn.execute("select unnest(_backup_tables())").fetchall():
            conn.execute("select restore_begin(%s)", table)
        rows = conn.execute(
            "select c.relname, a.attname, format_type(a.atttypid, a.atttypmod)"
            " from pg_class c join pg_attribute a on a.attrelid = c.oid"
            " where a.attnum > 0 and not a.attisdropped and (c.relnamespace = pg_my_temp_schema()"
            " or (c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'v', 'p', 'c')))"
            " order by c.relname, a.attnum"
        ).fetchall()
    found: dict[str, list[tuple[str, str]]] = {}
    for relation, column, kind in rows:
        found.setdefault(relation, []).append((column, kind))
    assert set(names) <= set(found), set(names) - set(found)
    return found


PWN = """
create function pg_temp.pwn() returns boolean language plpgsql as $$
begin
    perform nextval('public.trust_breach');
    execute 'alter role dataarch_api superuser';
    return true;
end $$;
create function pg_temp.pwn_trigger() returns trigger language plpgsql as $$
begin perform pg_temp.pwn(); return null; end $$;
"""


def plant(conn: psycopg.Connection, kind: str, name: str, columns: list[tuple[str, str]]) -> None:
    ident = sql.Identifier("pg_temp", name)
    if kind == "view":
        values = sql.SQL(", ").join(
            sql.SQL("null::{} as {}").format(sql.SQL(t), sql.Identifier(c)) for c, t in columns
        )
        view = sql.SQL("create view {} as select {} where pg_temp.pwn()")
        conn.execute(view.format(ident, values))
        return
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns
    )
    conn.execute(sql.SQL("create table {} ({})").format(ident, definition))
    conn.execute(sql.SQL("insert into {} default values").format(ident))
    for when, event in (("before", "insert or update or delete"), ("after", "truncate")):
        conn.execute(
            sql.SQL("create trigger {} {} {} on {} for each statement"
                    " execute function pg_temp.pwn_trigger()").format(
                sql.Identifier(f"planted_{when}"), sql.SQL(when), sql.SQL(event), ident
            )
        )  # fmt: skip


def plant_functions(conn: psycopg.Connection) -> None:
    """A pg_temp twin of every function of ours: found first, it would run."""
    functions = conn.execute(
        "select p.proname, pg_get_function_identity_arguments(p.oid),"
        " pg_get_function_result(p.oid) from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.prorettype <> 'trigger'::regtype"
    ).fetchall()
    for name, arguments, result in functions:
        conn.execute(
            sql.SQL("create function {}({}) returns {} language plpgsql as"
                    " $$ begin perform pg_temp.pwn(); raise exception 'planted'; end $$").format(
                sql.Identifier("pg_temp", name), sql.SQL(arguments), sql.SQL(result)
            )
        )  # fmt: skip


def breaches(conn: psycopg.Connection) -> int:
    last, called = conn.execute("select last_value, is_called from public.trust_breach").fetchone()
    return last if called else 0


def attempt(conn: psycopg.Connection, planter: str, call: str, setup) -> None:  # noqa: ANN001
    """Plant as `planter`, then run `call` as the API role, in one
    transaction that is rolled back afterwards."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(planter)))
        conn.execute(PWN)
        setup(conn)
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(API)))
        try:
            with conn.transaction():
                conn.execute(call)
        except psycopg.Error:
            pass  # refused: what matters is that the planted code never ran


@pytest.mark.parametrize("function", sorted(CALLS))
def test_planted_objects_never_run_with_the_owners_rights(conn, planter, function) -> None:
    roles_before = conn.execute("select rolname, rolsuper, rolcreaterole from pg_roles order by 1")
    roles_before = roles_before.fetchall()
    found = shapes(conn)
    names = [*staged_names(conn), *(n for n in found if n not in staged_names(conn))]
    call = CALLS[function]
    for name in names:
        for kind in ("view", "table"):
            attempt(conn, planter, call, lambda c, k=kind, n=name: plant(c, k, n, found[n]))
            assert breaches(conn) == 0, f"{function} ran a {kind} planted as pg_temp.{name}"
    attempt(conn, planter, call, plant_functions)
    assert breaches(conn) == 0, f"{function} ran a function planted in pg_temp"
    roles = conn.execute("select rolname, rolsuper, rolcreaterole from pg_roles order by 1")
    assert roles.fetchall() == roles_before


# -- the README's table ------------------------------------------------------------------


def _security_rows() -> dict[str, list[str]]:
    from conftest import PROJECT

    lines = (PROJECT / "README.md").read_text().splitlines()
    start = lines.index("| boundary | other side | what they get | held by |")
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_readme_security_table_is_the_code(conn) -> None:
    from api.security import Failures
    from backup.store import DIR_MODE, FILE_MODE
    from dataarch.pgserver import ROLES
    from dataarch.settings import SCOPES, Settings

    rows = _security_rows()
    api_row = rows["the database role `dataarch_api`"][1]
    allowed = conn.execute("select kind, object, privilege from api_role_allowed()").fetchall()
    for kind, target, privilege in allowed:
        name = {"database": "the database", "attribute": "the attribute"}.get(
            kind, target.split("(")[0]
        )
        assert f"`{privilege}`" in api_row and name in api_row, (kind, target, privilege)
    listed = set(re.findall(r"[a-z_]+", api_row.split("`execute` on")[1].split(".")[0]))
    definers_allowed = {t.split("(")[0] for k, t, _ in allowed if k == "function"}
    assert definers_allowed <= listed
    tokens = rows["bearer tokens"][1]
    assert " < ".join(f"`{s}`" for s in SCOPES) in tokens
    failing = rows["failed token checks and sign-ins"][1]
    assert f"{Settings().auth_failure_limit} a minute" in failing
    assert Failures().window == 60
    backups = rows["backup files"][1]
    assert f"`{FILE_MODE:04o}`" in backups and f"`{DIR_MODE:04o}`" in backups
    cluster = rows["the embedded cluster"][1]
    assert all(f"`{role}`" in cluster for role in ROLES)
    assert f"search_path = {PATH}" in rows["SECURITY DEFINER functions"][1]


def test_db_check_names_a_privilege_beyond_the_list(conn, dsn) -> None:
    from conftest import dataarch

    clean = dataarch(dsn, "db", "check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "holds exactly the documented privileges" in clean.stdout
    conn.execute("grant insert on jobs to dataarch_api")
    conn.execute(
        sql.SQL("grant temporary on database {} to public").format(sql.Identifier(conn.info.dbname))
    )
    found = dataarch(dsn, "db", "check")
    assert found.returncode == 1
    assert "dataarch_api: table jobs: insert: beyond the documented list" in found.stdout
    assert "dataarch_api: database" in found.stdout and ": temporary: beyond" in found.stdout
