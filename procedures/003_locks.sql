-- The one lock order, so that no two operations wait on each other:
--
--   1. a transaction takes its table locks through _lock_tables, which
--      takes them in _lock_order(): a referencing table before the tables
--      it references (employees, then jobs, then departments), then the
--      ingest log; and all or none, so that while it waits it holds none
--      of them. Each entry point locks the tables it writes before it
--      reads them (ingest_batch, csv_begin, revert_batch: a lock asked for
--      after a read is an upgrade, and two upgrades wait on each other), and
--      an operation on a referenced table (a restore, a revert) locks the
--      tables that reference it too, so a deleted parent never waits for a
--      child row that waits for it. tests/test_lock_order.py makes each
--      operation wait and checks what it holds at that moment.
--   2. a backup and a restore of one table exclude each other by an
--      advisory lock, never by waiting (procedures/060).
--   3. nobody queues for ACCESS EXCLUSIVE behind a backup: an initial load
--      asks for it without waiting, and loads the ordinary way when a
--      backup (or anyone) is reading the table (procedures/040).
--   4. rows too have one order where several statements change the same
--      ones: rejections (ingest_errors) are locked in error_id order, by a
--      subquery `order by x.error_id for no key update` that each UPDATE of
--      them reads (a batch resolving them, a close, a revert, a retry, a
--      restore reopening them); hire counts in key order (procedures/070);
--      a batch's rows in id order (_insert_judged). In two orders, two
--      statements each held a row the other wanted ("deadlock detected";
--      tests/test_row_lock_order.py).
--
-- Every wait is bounded by lock_timeout (every dataarch session sets it),
-- and a wait that runs out says which operation holds the table: sessions
-- name themselves in application_name ("dataarch backup", ...).

create or replace function _lock_order()
returns text[]
language sql immutable parallel safe
as $$
    -- referencing tables before referenced ones: the dictionary's load
    -- order backwards (tests/test_schema.py checks it against the foreign
    -- keys), then the ingest log
    select array(
        select t from unnest(_data_tables()) with ordinality as d (t, n) order by n desc
    ) || array['ingest_batches', 'ingest_errors', 'migrated_files', 'idempotency_keys']
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

create or replace function lock_holders_of(p_tables text[])
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- who holds any of p_tables (lock_holders), for a wait that ran out
    -- where nothing named the holder; 'another session' when nobody does now
    select coalesce(
        string_agg(distinct nullif(lock_holders(t::regclass), 'another session'), '; '),
        'another session'
    )
    from unnest(p_tables) as t
$$;

create or replace function _names_the_holder(p_message text)
returns boolean
language sql immutable parallel safe
as $$
    -- whether a 55P03's message already says who holds what (_wait_for_table,
    -- _table_busy, _batch_busy), so a handler raises it again as it is
    select p_message like '% is busy: % holds it'
$$;

create or replace function _table_busy(p_table text, p_held text[], p_hint text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: raises 55P03 '<p_table> is busy: <who holds any of p_held>
-- holds it' with p_hint. For a wait that ran out where nothing named the
-- holder: a wait for a row, or for a key a concurrent transaction has not
-- committed, instead of a table _lock_tables asked for. (The Python that
-- names a holder itself says it the same way: dataarch/errors.py.)
begin
    raise exception '% is busy: % holds it', p_table, lock_holders_of(p_held)
        using errcode = '55P03', hint = p_hint;
end;
$$;

create or replace function _try_lock_tables(p_modes jsonb)
returns text
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: either every table of p_modes is locked in its mode, in
-- _lock_order(), and NULL is returned; or none of them is (the block's
-- locks go with its subtransaction) and the first busy table is returned.
-- Never waits.
declare
    v_table text;
begin
    for v_table in
        select k from jsonb_object_keys(p_modes) as k
        order by array_position(_lock_order(), k) nulls last, k
    loop
        execute format('lock table %I in %s mode nowait', v_table, p_modes ->> v_table);
    end loop;
    return null;
exception when lock_not_available then
    return v_table;
end;
$$;

create or replace function _lock_tables(p_modes jsonb)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every table of p_modes ({"employees": "share row exclusive",
-- ...}) is locked in its mode, in _lock_order() (tables outside it last,
-- by name); or 55P03 says which table is busy and who holds it, after
-- waiting at most about lock_timeout. All or none: while it waits it holds
-- none of them, so it never waits holding a table that its holder waits
-- for (a deadlock), whatever order the others take theirs in. Nothing to
-- lock (NULL, as jsonb_object_agg of no rows gives, or {}): returns at once.
declare
    v_busy text;
    v_deadline timestamptz := clock_timestamp()
        + coalesce(nullif(current_setting('lock_timeout'), '0'), '1 century')::interval;
begin
    if p_modes is null or p_modes = '{}' then
        return;
    end if;
    if (select count(*) from jsonb_object_keys(p_modes)) = 1 then
        v_busy := (select k from jsonb_object_keys(p_modes) as k);
        perform _wait_for_table(v_busy, p_modes ->> v_busy, false);  -- one lock: nothing held
        return;
    end if;
    loop
        v_busy := _try_lock_tables(p_modes);
        exit when v_busy is null;
        -- wait until the busy table is free, holding nothing, then try all
        -- again; past the deadline, only a look (55P03 when it is still busy)
        perform _wait_for_table(v_busy, p_modes ->> v_busy, true,
            case when clock_timestamp() > v_deadline then 'nowait' else '' end);
    end loop;
end;
$$;

create or replace function _wait_for_table(
    p_table text, p_mode text, p_let_go boolean, p_wait text default ''
)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_table was locked in p_mode, waiting at most lock_timeout (not
-- at all with p_wait 'nowait'), and is still held unless p_let_go; when
-- the wait runs out, 55P03 says who holds it.
begin
    execute format('lock table %I in %s mode %s', p_table, p_mode, p_wait);
    if p_let_go then
        raise exception using errcode = 'DAT14';  -- undo the block: the lock goes with it
    end if;
exception
    when sqlstate 'DAT14' then
        null;
    when lock_not_available then
        raise exception '% is busy: % holds it', p_table, lock_holders(p_table::regclass)
            using errcode = '55P03',
                hint = 'Try again when it has finished (the wait is DATAARCH_LOCK_TIMEOUT).';
end;
$$;

create or replace function _lock_tables_to_read(p_tables text[])
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_tables are locked in ACCESS SHARE mode, the lock reading
-- them takes, through _lock_tables: in the one order, all or none, or
-- 55P03 names the busy one and who holds it. A reader calls it before it
-- reads, and reads in later statements of a VOLATILE function, each of
-- which takes its snapshot after the wait. A STABLE function reads with
-- the snapshot its caller took before it: a table a restore truncated
-- meanwhile read as empty (tests/test_operations_meet.py).
begin
    perform _lock_tables((
        select jsonb_object_agg(t, 'access share') from unnest(p_tables) as t
    ));
end;
$$;

create or replace function _lock_referenced_tables(p_table text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the tables p_table's columns reference (_referenced_tables,
-- generated in procedures/004) are locked for reading them
-- (_lock_tables_to_read). Judging calls it before its rules read them, so
-- a load or a batch that waits for a table a restore holds says so, as a
-- wait for the table it writes does.
begin
    perform _lock_tables_to_read(_referenced_tables(p_table));
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
revoke all on function _try_lock_tables(jsonb) from public;
revoke all on function _wait_for_table(text, text, boolean, text) from public;
revoke all on function _lock_referenced_tables(text) from public;
revoke all on function _lock_tables_to_read(text[]) from public;
revoke all on function _table_busy(text, text[], text) from public;
grant execute on function lock_holders(regclass, bigint) to dataarch_api;
-- The API's reads lock what they read first. Not SECURITY DEFINER: they
-- lock only what the caller may read anyway, so they grant nothing.
grant execute on function
_lock_tables_to_read(text[]), _lock_tables(jsonb), _try_lock_tables(jsonb),
_wait_for_table(text, text, boolean, text)
to dataarch_api;
