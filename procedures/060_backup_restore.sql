-- Backup and restore support. A backup reads its tables in one snapshot and
-- records each table's row count and checksum, in backup_catalog and in the
-- file's header (backup_record). A restore loads each file into a
-- session-private staging table (restore_begin), then replaces the tables'
-- rows in one transaction, re-checks every constraint and reference and
-- compares count and checksum before the caller commits. Callers need no
-- write privilege on the tables themselves.
--
-- Backups and restores of one table exclude each other through an advisory
-- lock (backup_lock_key): a backup holds it shared, in its session, from
-- before its snapshot to its end; restore_begin takes it exclusive or
-- refuses at once (DAT08). So a restore never waits on a backup (whose
-- worker sessions would queue behind the restore's lock: a deadlock no
-- server can see), and a backup never reads a table a restore truncated
-- after the backup's snapshot (TRUNCATE is not MVCC-safe).
--
-- Raises DAT06 when the restored rows are not the rows the file's header
-- recorded, DAT08 when the table is busy, DAT09 when restore_finish is
-- offered a state no backup of this database recorded.

create or replace function _backup_tables()
returns text[]
language sql immutable parallel safe
as $$
    -- Every table a full backup set holds, in the order a restore loads them
    -- (referenced tables first): the data, then the ingest log, so that a
    -- recovery keeps the logged rejections, the migrated files and the
    -- answers to repeated requests.
    select array[
        'departments', 'jobs', 'employees',
        'ingest_batches', 'ingest_errors', 'migrated_files', 'idempotency_keys'
    ]
$$;

create or replace function _require_backup_table(p_table text)
returns regclass
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_table as a regclass when a backup may hold it, else DAT01.
begin
    if p_table is null or not p_table = any(_backup_tables()) then
        raise exception 'no table "%" is backed up', p_table
            using errcode = 'DAT01',
                hint = 'The tables are ' || array_to_string(_backup_tables(), ', ') || '.';
    end if;
    return p_table::regclass;
end;
$$;

create or replace function backup_lock_key(p_table text)
returns bigint
language sql immutable parallel safe
as $$
    -- The advisory lock a backup of p_table holds shared, and a restore of
    -- it takes exclusive.
    select hashtextextended('dataarch.backup:' || p_table, 0)
$$;

create or replace function _unsigned_checksum(p_sum numeric)
returns text
language sql immutable parallel safe
as $$
    -- A sum of signed 64-bit hashes, as the unsigned 64-bit number people
    -- read. Files of earlier releases may record the signed form; it is
    -- the same number modulo 2^64.
    select mod(mod(coalesce(p_sum, 0), 18446744073709551616) + 18446744073709551616,
        18446744073709551616)::text
$$;

create or replace function relation_checksum(p_relation regclass)
returns table (row_count bigint, checksum text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 3
as $$
-- Promise: the row count and an order-independent 64-bit checksum of the
-- rows' text, stable across sessions (zone and styles are pinned here), of
-- any table or staging table shaped like one.
begin
    return query execute format(
        'select count(*), _unsigned_checksum(sum(hashtextextended(t::text, 0)::numeric))'
        ' from %s as t', p_relation
    );
end;
$$;

create or replace function table_checksum(p_table text)
returns table (row_count bigint, checksum text)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- relation_checksum of one of the tables a backup holds.
    select * from relation_checksum(_require_backup_table(p_table))
$$;

create or replace function _keyed_checksums(p_relation regclass)
returns table (row_count bigint, checksum text, keyed_checksum text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 3
as $$
-- Promise: relation_checksum's count and checksum, and the same checksum
-- under backup_key's secret seed, in one pass over the rows.
begin
    return query execute format(
        'select count(*),'
        ' _unsigned_checksum(sum(hashtextextended(r, 0)::numeric)),'
        ' _unsigned_checksum(sum(hashtextextended(r, %s)::numeric))'
        ' from (select t::text as r from %s as t offset 0) as x',
        (select k.seed from backup_key as k), p_relation
    );
end;
$$;

create or replace function _primary_key_list(p_table regclass)
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- p_table's primary key columns, quoted, comma-separated, in key order.
    select string_agg(format('%I', a.attname), ', ' order by k.n)
    from pg_index as i
    cross join unnest(i.indkey) with ordinality as k (attnum, n)
    join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = p_table and i.indisprimary
$$;

create or replace function rows_breaking_constraints(p_table text, p_limit integer default 10)
returns table (constraint_name text, row_key text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: up to p_limit rows of p_table, by primary key, for each of its
-- CHECK constraints not yet validated (added NOT VALID by a migration,
-- because a database of an earlier release may hold rows it refuses). A
-- backup refuses to write such rows: the restore would refuse them.
declare
    v_table regclass := _require_backup_table(p_table);
    v_check record;
    v_key text;
begin
    v_key := _primary_key_list(v_table);
    for v_check in
        select c.conname, pg_get_expr(c.conbin, c.conrelid) as expression
        from pg_constraint as c
        where c.conrelid = v_table and c.contype = 'c' and not c.convalidated
        order by c.conname
    loop
        return query execute format(
            'select %L::text, row(%s)::text from %s where not (%s) order by %s limit %s',
            v_check.conname, v_key, v_table, v_check.expression, v_key, p_limit
        );
    end loop;
end;
$$;

create or replace function backup_record(p_set text, p_table text, p_file text)
returns table (row_count bigint, checksum text)
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the row count and checksum of p_table as the caller's snapshot
-- sees it, for the file's header, recorded in backup_catalog in the
-- caller's transaction: the record stays only if the backup commits.
declare
    v_state record;
begin
    select * into v_state from _keyed_checksums(_require_backup_table(p_table));
    insert into backup_catalog (
        set_name, table_name, file_name, row_count, checksum, keyed_checksum
    )
    values (p_set, p_table, p_file, v_state.row_count, v_state.checksum, v_state.keyed_checksum);
    return query select v_state.row_count, v_state.checksum;
end;
$$;

create or replace function restore_begin(p_table text)
returns text
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: refuses at once (DAT08) while a backup or another restore of
-- p_table runs; else locks p_table against every other reader and writer
-- until the caller's transaction ends (waiting at most the caller's
-- lock_timeout, 55P03), and creates the empty staging table
-- pg_temp.restore_<p_table>, shaped like p_table and dropped at commit,
-- that the caller may COPY into. Returns the staging table's name.
declare
    v_table regclass := _require_backup_table(p_table);
    v_staging text := 'restore_' || p_table;
begin
    if not pg_try_advisory_xact_lock(backup_lock_key(p_table)) then
        raise exception 'a backup or restore of % is running', p_table
            using errcode = 'DAT08',
                hint = 'Try again when it has finished.';
    end if;
    execute format('lock table %s in access exclusive mode', v_table);
    if _own_temp_table(v_staging) then
        execute format('drop table pg_temp.%I', v_staging);
    end if;
    execute format('create temp table %I (like %s) on commit drop', v_staging, v_table);
    execute format('grant insert on pg_temp.%I to %I', v_staging, session_user);
    return v_staging;
end;
$$;

create or replace function _restore_diff(p_table regclass, p_staging regclass)
returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set work_mem = '256MB'
as $$
-- Promise: how replacing p_table's rows by p_staging's would change it,
-- matched by primary key: {"added", "removed", "changed"} row counts. One
-- hash join on the key columns, rows compared as composites (1M rows: ~1 s;
-- through their text, a multiple of that).
declare
    v_key text[];
    v_diff jsonb;
begin
    select array_agg(format('%I', a.attname) order by k.n) into v_key
    from pg_index as i
    cross join unnest(i.indkey) with ordinality as k (attnum, n)
    join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = p_table and i.indisprimary;
    execute format($sql$
        select jsonb_build_object(
            'added', count(*) filter (where c.%1$s is null),
            'removed', count(*) filter (where s.%1$s is null),
            'changed', count(*) filter (
                where s.%1$s is not null and c.%1$s is not null and row(s.*) is distinct from row(c.*)
            )
        )
        from %2$s as s full join %3$s as c on %4$s
    $sql$, v_key[1], p_staging, p_table,
        (select string_agg(format('s.%1$s = c.%1$s', k), ' and ') from unnest(v_key) as k))
    into v_diff;
    return v_diff;
end;
$$;

create or replace function _restore_tables(p_states jsonb)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: for every {table: {"rows", "checksum"}} of p_states, whose
-- staging tables restore_begin made and the caller filled, replaces the
-- table's rows with the staged ones, in _backup_tables() order, in the
-- caller's transaction. Every constraint is checked; references into and
-- out of the tables once per table, not row by row. Each table must then
-- hold the recorded number of rows with the recorded checksum, else DAT06.
-- Idempotency keys of the replaced tables' batches are forgotten (their
-- stored answers describe rows that may be gone) unless the keys are
-- restored too. Returns, per table: rows, and added/removed/changed
-- against what it held before.
declare
    v_tables text[] := array(
        select t from unnest(_backup_tables()) with ordinality as b (t, n)
        where p_states ? t order by n
    );
    v_table text;
    v_result jsonb := '{}';
    v_suspended jsonb := '[]';
    v_identity record;
    v_found record;
begin
    perform _one_connection_per_node();  -- before any read: the keys are dropped below
    if cardinality(v_tables) <> (select count(*) from jsonb_object_keys(p_states)) then
        perform _require_backup_table(
            (select k from jsonb_object_keys(p_states) as k where k <> all(v_tables) limit 1)
        );
    end if;
    foreach v_table in array v_tables loop
        if not _own_temp_table('restore_' || v_table) then
            raise exception 'restore_begin(%) was not called in this transaction', v_table
                using errcode = 'DAT02';
        end if;
        v_result := v_result || jsonb_build_object(v_table, _restore_diff(
            v_table::regclass, ('pg_temp.restore_' || v_table)::regclass
        ));
    end loop;

    -- References are checked once per table: the restored tables' own keys
    -- are dropped and re-created (validated against all rows) at the end,
    -- and the deferrable ones into them are checked at the end too.
    set constraints all deferred;
    foreach v_table in array v_tables loop
        v_suspended := v_suspended || _suspend_foreign_keys(v_table::regclass)
            || _suspend_keys_into(v_table::regclass);
    end loop;
    foreach v_table in array v_tables loop
        if exists (
            select from pg_constraint as f
            where f.contype = 'f' and f.confrelid = v_table::regclass
        ) then
            execute format('delete from %I', v_table);  -- still referenced: no truncate
            execute format('insert into %I overriding system value select * from pg_temp.%I',
                v_table, 'restore_' || v_table);
        elsif v_table = 'employees' then
            -- the largest table: its indexes are built once, not row by row
            v_suspended := _suspend_indexes('employees') || v_suspended;
            truncate employees;
            insert into employees select * from pg_temp.restore_employees;
        else
            execute format('truncate %I', v_table);
            execute format('insert into %I overriding system value select * from pg_temp.%I',
                v_table, 'restore_' || v_table);
        end if;
        for v_identity in
            select a.attname from pg_attribute as a
            where a.attrelid = v_table::regclass and a.attidentity <> ''
        loop
            execute format(
                'select setval(pg_get_serial_sequence(%L, %L), coalesce(max(%I), 1),'
                ' max(%I) is not null) from %I',
                v_table, v_identity.attname, v_identity.attname, v_identity.attname, v_table
            );
        end loop;
    end loop;
    perform _reinstate(v_suspended);
    set constraints all immediate;  -- so a broken reference is reported as such

    if not p_states ? 'idempotency_keys' then
        delete from idempotency_keys as k
        using ingest_batches as b
        where b.batch_id = k.batch_id and b.table_name = any(v_tables);
    end if;

    foreach v_table in array v_tables loop
        select * into v_found from relation_checksum(v_table::regclass);
        if v_found.row_count <> (p_states -> v_table ->> 'rows')::bigint
            or v_found.checksum <> _unsigned_checksum((p_states -> v_table ->> 'checksum')::numeric)
        then
            raise exception 'restored % rows of % with checksum %, but the backup recorded % rows with checksum %',
                v_found.row_count, v_table, v_found.checksum, p_states -> v_table ->> 'rows',
                _unsigned_checksum((p_states -> v_table ->> 'checksum')::numeric)
                using errcode = 'DAT06',
                    hint = 'The backup file does not hold the rows it was made from.';
        end if;
        v_result := jsonb_set(v_result, array[v_table],
            jsonb_build_object('rows', v_found.row_count) || (v_result -> v_table));
    end loop;
    return v_result;
end;
$$;

create or replace function restore_finish(p_table text, p_rows bigint, p_checksum text)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: as _restore_tables for the one data table p_table (staged by
-- restore_begin), but only to a state a backup of this database recorded
-- in backup_catalog, else DAT09 and nothing changes: a caller cannot stage
-- rows of its own and make them the table. Returns {"rows", "added",
-- "removed", "changed"}.
declare
    v_state record;
begin
    if p_table is null or not p_table = any(array['departments', 'jobs', 'employees']) then
        raise exception 'restore_finish restores departments, jobs or employees, not "%"', p_table
            using errcode = 'DAT01',
                hint = 'The ingest log is restored with its whole backup set (dataarch restore --all).';
    end if;
    if not _own_temp_table('restore_' || p_table) then
        raise exception 'restore_begin(%) was not called in this transaction', p_table
            using errcode = 'DAT02';
    end if;
    select * into v_state from _keyed_checksums(('pg_temp.restore_' || p_table)::regclass);
    if not exists (
        select from backup_catalog as c
        where c.table_name = p_table and c.row_count = v_state.row_count
            and c.keyed_checksum = v_state.keyed_checksum
    ) then
        raise exception 'no backup of this database recorded these % rows of %', v_state.row_count, p_table
            using errcode = 'DAT09',
                hint = 'Only a state a backup recorded can be restored through this function.';
    end if;
    return _restore_tables(jsonb_build_object(
        p_table, jsonb_build_object('rows', p_rows, 'checksum', p_checksum)
    )) -> p_table;
end;
$$;

-- _require_backup_table and relation_checksum stay callable by everyone:
-- they read only what the caller may read (table_checksum needs them).
revoke all on function _keyed_checksums(regclass) from public;
revoke all on function backup_record(text, text, text) from public;
revoke all on function restore_begin(text) from public;
revoke all on function _restore_diff(regclass, regclass) from public;
revoke all on function _restore_tables(jsonb) from public;
revoke all on function restore_finish(text, bigint, text) from public;
grant execute on function table_checksum(text) to dataarch_api;
grant execute on function backup_record(text, text, text) to dataarch_api;
grant execute on function restore_begin(text) to dataarch_api;
grant execute on function restore_finish(text, bigint, text) to dataarch_api;
