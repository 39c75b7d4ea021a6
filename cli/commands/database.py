"""dataarch db start|stop|status|url|init|check."""

from __future__ import annotations

import argparse

import psycopg

from dataarch import db, installer
from dataarch.settings import API_ROLE, Settings

NOT_RUNNING = 3  # the documented exit status for "not running / not reachable"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["start", "stop", "status", "url", "init", "check"])


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action in ("start", "stop") and not settings.embedded:
        print("DATABASE_URL or PG* variables are set: the embedded server is not in use.")
        return 0 if args.action == "stop" else 1
    if args.action == "start":
        print(f"PostgreSQL is running: {db.conninfo(settings, start=True)}")
    elif args.action == "stop":
        db.embedded_cluster(settings).stop()
        print("PostgreSQL stopped.")
    elif args.action == "status":
        return status(settings)
    elif args.action == "check":
        return check(settings)
    elif args.action == "url":  # whether it runs or not: `db status` says
        print(db.url(settings))
    elif args.action == "init":
        print(init(settings))
    return 0


def init(settings: Settings) -> str:
    """Install or upgrade the schema; one line saying what changed."""
    with db.connect(settings, start=True) as conn:
        applied = installer.install(conn)
        db.set_api_password(conn, settings)
        version = installer.schema_version(conn)
    files = [name for name in applied if name.endswith(".sql")]
    distributed = [name for name in applied if not name.endswith(".sql")]
    migrations = sum(name.startswith("schema/") for name in files)
    if not files:
        summary = f"schema version {version}: up to date"
    else:
        summary = (
            f"schema version {version}: {migrations} migration(s) and"
            f" {len(files) - migrations} code file(s) applied"
        )
    return "\n".join([summary, *distributed])


def status(settings: Settings) -> int:
    """Where the database is, whether it runs, and what an install would change."""
    if settings.embedded:
        cluster = db.embedded_cluster(settings)
        running = cluster.is_running()
        print(f"embedded PostgreSQL at {cluster.root}: {'running' if running else 'stopped'}")
        if not running:
            return NOT_RUNNING
    with db.connect(settings) as conn:
        todo = installer.plan(conn)
        engine = installer.engine(conn)
    print(f"schema version: {todo.version}")
    print(describe_engine(engine))
    for sql_file in todo.pending:
        print(f"  pending migration: {sql_file.name}")
    for sql_file in todo.repeatable:
        print(f"  code to apply: {sql_file.name}")
    for name in todo.edited:
        print(f"  EDITED after it was applied (install will refuse): {name}")
    print("  up to date" if todo.up_to_date else "  run `dataarch db init` to apply")
    return 0


def describe_engine(engine: dict) -> str:
    """ "engine: PostgreSQL" or Citus with its nodes and each table's shards."""
    if engine["engine"] != "citus":
        return "engine: PostgreSQL (one server)"
    nodes = ", ".join(f"{n['name']}:{n['port']} ({n['role']})" for n in engine["nodes"])
    lines = [f"engine: Citus {engine['version']}; nodes: {nodes}"]
    for table in engine["tables"]:
        where = f"{table['shards']} shard(s) on {table['nodes']} node(s)"
        lines.append(f"  {table['table']}: {table['kind']}, {where}")
    return "\n".join(lines)


def check(settings: Settings) -> int:
    """What needs a person: rows an earlier release let in that today's
    constraints refuse (they stop a backup), listed by table and constraint,
    and privileges of the API role beyond the documented list (or missing
    from it); status 1 when any."""
    with db.connect(settings) as conn:
        broken = check_rows(conn)
        doors = check_api_role(conn)
    return 1 if broken or doors else 0


def check_api_role(conn: psycopg.Connection) -> bool:
    """The API role against api_role_allowed() (procedures/080_trust.sql)."""
    findings = conn.execute("select * from api_role_audit()").fetchall()
    for finding, kind, target, privilege in findings:
        what = "beyond the documented list" if finding == "excess" else "documented but missing"
        print(f"{API_ROLE}: {kind} {target}: {privilege}: {what}")
    if any(finding == "excess" for finding, *_ in findings):
        print(f"revoke what {API_ROLE} holds beyond the list (README, Security), or document it")
    if not findings:
        print(f"{API_ROLE} holds exactly the documented privileges")
    return bool(findings)


def check_rows(conn: psycopg.Connection) -> bool:
    """Rows breaking a constraint added NOT VALID; True when any."""
    found = conn.execute(
        "select t, b.constraint_name, count(*), string_agg(b.row_key, ', ')"
        " filter (where b.n <= 10)"
        " from unnest(_backup_tables()) as t,"
        " lateral (select r.*, row_number() over () as n"
        "          from rows_breaking_constraints(t, 100000) as r) as b"
        " group by 1, 2 order by 1, 2"
    ).fetchall()
    for table, constraint, count, keys in found:
        more = " ..." if count > 10 else ""
        print(f"{table}: {count} row(s) break {constraint}: {keys}{more}")
    if found:
        print("correct or delete them (by primary key, as listed); until then no backup is written")
        return True
    print("every row holds every constraint")
    return False


COMMANDS = {"db": (add_arguments, run)}
