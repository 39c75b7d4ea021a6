-- The one lock order, so that no two operations wait on each other:
--
--   1. a transaction takes its table locks through _lock_tables, which
--      takes them in _lock_order(): a referencing table before the tables
--      it references (employees, then jobs, then departments), then the
--      ingest log. Each entry point locks the table it writes before it
--      reads any other (ingest_batch, csv_begin), and an operation on a
--      referenced table (a restore, a revert) first locks the tables that
--      reference it, so a deleted parent never waits for a child row that
--      waits for it.
--   2. a backup and a restore of one table exclude each other by an
--      advisory lock, never by waiting (procedures/060).
--   3. nobody queues for ACCESS EXCLUSIVE behind a backup: an initial load
--      asks for it without waiting, and loads the ordinary way when a
--      backup (or anyone) is reading the table (procedures/040).
--
-- Every wait is bounded by lock_timeout (every dataarch session sets it),
-- and a wait that runs out says which operation holds the table: sessions
-- name themselves in application_name ("dataarch backup", ...).

create or replace function _lock_order()
returns text[]
language sql immutable parallel safe
as $$
    -- referencing tables before referenced ones (tests/test_schema.py checks
    -- it against the foreign keys), then the ingest log
    select array[
        'employees', 'jobs', 'departments',
        'ingest_batches', 'ingest_errors', 'migrated_files', 'idempotency_keys'
    ]
$$;

create or replace function lock_holders(p_relation regclass, p_advisory bigint default null)
returns text
language plpgsql stable
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: who else holds a lock on p_relation, or the advisory lock
-- p_advisory, in words: "dataarch backup (pid 4242, since 12:00:01 UTC)",
-- several joined by "; ", or 'another session' when it has gone since.
-- SECURITY DEFINER: the sessions of other roles are described too.
declare
    v_holders text;
begin
    select string_agg(distinct format(
        '%s (pid %s, since %s UTC)',
        coalesce(nullif(a.application_name, ''), 'a session of ' || a.usename), a.pid,
        to_char(coalesce(a.xact_start, a.backend_start) at time zone 'UTC', 'HH24:MI:SS')
    ), '; ')
    into v_holders
    from pg_locks as l
    join pg_stat_activity as a on a.pid = l.pid
    where l.granted and l.pid <> pg_backend_pid()
        and (
            (l.locktype = 'relation' and l.relation = p_relation)
            or (
                l.locktype = 'advisory'
                and ((l.classid::bigint << 32) | l.objid::bigint) = p_advisory
            )
        );
    return coalesce(v_holders, 'another session');
end;
$$;

create or replace function _lock_tables(p_modes jsonb)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every table of p_modes ({"employees": "share row exclusive",
-- ...}) is locked in its mode, in _lock_order() (tables outside it last,
-- by name), each waiting at most lock_timeout; when a wait runs out,
-- 55P03 says which table is busy and who holds it.
declare
    v_table text;
begin
    for v_table in
        select k from jsonb_object_keys(p_modes) as k
        order by array_position(_lock_order(), k) nulls last, k
    loop
        begin
            execute format('lock table %I in %s mode', v_table, p_modes ->> v_table);
        exception when lock_not_available then
            raise exception '% is busy: % holds it', v_table, lock_holders(v_table::regclass)
                using errcode = '55P03',
                    hint = 'Try again when it has finished (the wait is DATAARCH_LOCK_TIMEOUT).';
        end;
    end loop;
end;
$$;

create or replace function _referencing_tables(p_table regclass)
returns text[]
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- the other tables whose foreign keys reference p_table
    select coalesce(array_agg(distinct f.conrelid::regclass::text), '{}')
    from pg_constraint as f
    where f.contype = 'f' and f.confrelid = p_table and f.conrelid <> p_table
$$;

revoke all on function lock_holders(regclass, bigint) from public;
revoke all on function _lock_tables(jsonb) from public;
grant execute on function lock_holders(regclass, bigint) to dataarch_api;
