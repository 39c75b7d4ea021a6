-- The one place where plain PostgreSQL and Citus (distributed PostgreSQL)
-- differ. Everything else is one code path on both. The differences:
--
-- 1. Distribution (distribute_tables). On Citus, departments and jobs are
--    reference tables (a copy on every node, so each shard checks its
--    foreign keys locally) and employees is distributed by employee_id.
--    The log tables (ingest_batches, ingest_errors, migrated_files,
--    idempotency_keys, backup_catalog, ...) stay local to the coordinator:
--    no foreign key ties them to the HR tables, each batch writes a few
--    rows to them, and the coordinator is where ingest_batch runs.
-- 2. hire_counts. On PostgreSQL it is a table that statement-level
--    triggers on employees keep current (procedures/070). Citus refuses
--    triggers on a distributed table (they would run on each shard, which
--    cannot update another table), so there it is a view: the KPIs become
--    aggregates that every worker computes over its shards in parallel.
-- 3. Per-row foreign key triggers (_skips_row_triggers). A batch's
--    references are checked and locked once, by _insert_valid_rows; skipping the
--    per-row RI triggers on top of that needs session_replication_role,
--    which only a superuser or a role granted SET on it may change. Where
--    it may not, or on a distributed table (the triggers run on the
--    workers), or when a trigger on the table is not ENABLE ALWAYS (it
--    would be skipped silently), the triggers fire: same result, ~9 % more
--    time a 1000-row batch. Below 600 valid rows they fire anyway
--    (_skipping_row_triggers_pays): switching the setting costs more. A
--    CSV file's rejections are logged the same way (_log_skips_row_triggers).
-- 4. DDL inside a transaction (restore, an initial load drop and re-create
--    keys and indexes): after reading shards in parallel, Citus refuses DDL
--    on a table with a foreign key to a reference table, so such a
--    transaction first asks for one connection per node
--    (_one_connection_per_node). SET CONSTRAINTS does not reach the shards:
--    a restore drops the keys into a reference table (_suspend_keys_into).
-- 5. SQL-language functions. Citus cannot plan a parameterised SQL function
--    that reads a distributed table, inlined or not, so every function that
--    reads departments, jobs, employees or hire_counts is PL/pgSQL
--    (procedures/README.md; tests/test_schema.py checks it).
-- 6. The smallest initial load (_initial_load_from): rebuilding a table's
--    indexes is DDL on every shard on Citus, so a file there must be
--    larger before a CSV load takes that path.

create or replace function _citus_installed()
returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    select exists (select from pg_extension where extname = 'citus')
$$;

create or replace function _citus_kind(p_table regclass)
returns text
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: how Citus manages p_table: 'distributed', 'reference', 'local'
-- (a Citus local table), or NULL when it does not (and on plain
-- PostgreSQL, where Citus's catalog does not exist).
declare
    v_kind text;
begin
    if to_regclass('pg_catalog.pg_dist_partition') is null then
        return null;
    end if;
    execute $sql$
        select case
            when p.partmethod <> 'n' then 'distributed'
            when p.repmodel = 't' then 'reference'
            else 'local'
        end
        from pg_dist_partition as p where p.logicalrelid = $1
    $sql$ into v_kind using p_table;
    return v_kind;
end;
$$;

create or replace function _hire_counts_is_table()
returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- true on plain PostgreSQL (triggers keep it), false on Citus (a view)
    select c.relkind = 'r' from pg_class as c where c.oid = 'public.hire_counts'::regclass
$$;

create or replace function _skips_row_triggers(p_table regclass)
returns boolean
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true only when an insert into p_table may run with
-- session_replication_role = replica and lose nothing: the current role may
-- set it, p_table is a plain local table, and every trigger of its own is
-- ENABLE ALWAYS (so only the internal RI triggers are skipped).
begin
    return has_parameter_privilege('session_replication_role', 'SET')
        and _citus_kind(p_table) is null
        and not exists (
            select from pg_trigger as t
            where t.tgrelid = p_table and not t.tgisinternal and t.tgenabled <> 'A'
        );
end;
$$;

create or replace function _log_skips_row_triggers(p_rejections bigint)
returns boolean
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true when the caller may log p_rejections rejections (those of
-- pg_temp.judged_rows) in ingest_errors with session_replication_role =
-- replica, skipping the per-row checks of its two foreign keys (~7 us a
-- row: 0.7 s of a file of 100 000 rejected lines): when _skips_row_triggers
-- allows it and that many pay for it (_skipping_row_triggers_pays). The
-- keys hold without them: a rejection's batch is the caller's own, made in
-- this transaction, and its reason is joined from reason_codes, whose rows
-- are locked here (FOR KEY SHARE, as the triggers would: all of them, a
-- few dozen, rather than a scan of the rejections for theirs) when it
-- answers true. False changes nothing.
begin
    if not (_skips_row_triggers('ingest_errors') and _skipping_row_triggers_pays(p_rejections))
    then
        return false;
    end if;
    perform from reason_codes for key share;
    return true;
end;
$$;

create or replace function _skipping_row_triggers_pays(p_rows bigint)
returns boolean
language sql immutable
as $$
    -- Whether skipping the per-row triggers pays for a batch of p_rows valid
    -- rows. Setting session_replication_role empties the session's whole
    -- plan cache, so every statement of the batch is analysed and planned
    -- again (~3.7 ms), and the references are locked and checked once more,
    -- while a row's two checks by the triggers cost ~6 us. Measured
    -- 2026-12-05 on 300 000 employees, p50 of 40 batches, two to four
    -- rounds alternating (ms a batch, skipped / triggers): 100 rows 7.6 /
    -- 4.8-5.2, 200 rows 9.7-9.8 / 7.5, 300 rows 11.7-11.8 / 10.1-10.5, 400
    -- rows 13.9 / 12.6-13.3, 500 rows 15.6-15.7 / 15.0-15.2, 600 rows
    -- 17.5-17.6 / 17.5-17.7, 700 rows 19.4-19.6 / 20.1-20.2, 1000 rows
    -- 25.1-25.3 / 27.5-27.7. Four sessions at once agree (k rows/s, three
    -- rounds): 300 rows 43.8-45.1 / 48.8-51.1, 500 rows 55.2-57.3 /
    -- 58.9-59.1, 700 rows 61.2-62.2 / 59.8-60.4. (At 200 until then, from
    -- figures of batches twice as slow.)
    select p_rows >= 600
$$;

create or replace function _initial_load_from()
returns bigint
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- The fewest records that make a CSV file an initial load when its
    -- table holds no more rows than the file (ingest_csv_lines: the table
    -- taken exclusively, its indexes rebuilt once after the insert). On
    -- plain PostgreSQL the rebuild pays from a few thousand records: files
    -- into an empty employees table, one session, seconds a file with the
    -- indexes kept / rebuilt (2026-12-05, three or four rounds alternating):
    -- 1 000 lines 0.028-0.029 / 0.028-0.029, 2 000 0.043-0.058 /
    -- 0.041-0.045, 5 000 0.086-0.088 / 0.076-0.078, 10 000 0.155-0.159 /
    -- 0.135-0.139, 40 000 0.51-0.52 / 0.43, 80 000 0.99 / 0.82-0.83. On
    -- Citus, where the rebuild is DDL on every shard over one connection a
    -- node, it stays at the 100 000 it was everywhere until then (not
    -- measured lower there).
    select case when _citus_installed() then 100000 else 5000 end
$$;

create or replace function _one_connection_per_node()
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: on Citus, the rest of this transaction reaches each node over one
-- connection (citus.multi_shard_modify_mode = sequential), as DDL on a
-- table with a foreign key to a reference table requires; nothing on plain
-- PostgreSQL.
begin
    if _citus_installed() then
        perform set_config('citus.multi_shard_modify_mode', 'sequential', true);
    end if;
end;
$$;

create or replace function _suspend_keys_into(p_table regclass)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: on Citus, when p_table is a reference table, the foreign keys
-- of the tables that reference it are dropped, and the statements that
-- re-create them (validating every row) returned, for _reinstate. SET
-- CONSTRAINTS ... DEFERRED does not reach the shards, so a restore could not
-- replace p_table's rows while they are referenced. '[]' elsewhere: plain
-- PostgreSQL defers those checks to the end of the restore.
declare
    v_child regclass;
    v_statements jsonb := '[]';
begin
    if _citus_kind(p_table) is distinct from 'reference' then
        return v_statements;
    end if;
    for v_child in
        select distinct f.conrelid::regclass from pg_constraint as f
        where f.contype = 'f' and f.confrelid = p_table and f.conrelid <> p_table
    loop
        v_statements := v_statements || _suspend_foreign_keys(v_child);
    end loop;
    return v_statements;
end;
$$;

create or replace function _shard_count(p_table regclass)
returns integer
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the shards p_table is distributed into: citus.shard_count when
-- an operator set it (for the database, the role, the server or the
-- session), else two a worker, and more when the table holds data (one a
-- GB), so that no shard outgrows what one node scans quickly. Citus's own
-- default, 32, made a 1000-row batch ~330 ms on two workers (one task a
-- shard; ~190 ms with 4) and a KPI ~10x slower at 96 000 rows (a partial
-- aggregate a shard, each nearly as many groups as rows). Change it later
-- with alter_distributed_table(t, shard_count := n, cascade_to_colocated :=
-- true).
declare
    v_set constant text :=
        (select s.source from pg_settings as s where s.name = 'citus.shard_count');
    v_workers integer;
begin
    if v_set is distinct from 'default' then
        return current_setting('citus.shard_count')::integer;
    end if;
    execute 'select count(*) from pg_dist_node'
        || ' where isactive and noderole = ''primary'' and groupid <> 0'
    into v_workers;
    return greatest(2 * v_workers, 2, ceil(pg_total_relation_size(p_table) / 1e9)::integer);
end;
$$;

create or replace function distribute_tables()
returns text[]
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: with the citus extension in this database, every table of the
-- data dictionary is distributed by the rule: a table another references
-- is a reference table (a copy on every node, so the references are
-- checked where the rows are), a table nobody references is distributed by
-- its id (its rows moved to the shards); hire_counts is then a view over
-- employees. Returns one line per change made, none when there was nothing
-- to do (plain PostgreSQL, or already distributed); a table a migration
-- adds later is distributed by the next install. Dropping the hire_counts
-- table drops the views that read it: the installer applies views/ again
-- when this returns anything.
declare
    v_table text;
    v_keys jsonb := '[]';
    v_leaves text[];
    v_shards integer;
    v_done text[] := '{}';
begin
    if not _citus_installed() then
        return v_done;
    end if;
    select coalesce(array_agg(t order by n), '{}') into v_leaves
    from unnest(_data_tables()) with ordinality as d (t, n)
    -- a table a migration created with a key into a reference table is
    -- already a Citus local table (Citus makes it one): it moves too
    where coalesce(_citus_kind(t::regclass), 'local') = 'local'
        and not exists (
            select from pg_constraint as f
            where f.contype = 'f' and f.confrelid = t::regclass
        );
    -- Without their foreign keys while the tables move: Citus would make a
    -- local table that references a reference table a Citus local table.
    foreach v_table in array v_leaves loop
        v_keys := v_keys || _suspend_foreign_keys(v_table::regclass);
    end loop;
    if 'employees' = any(v_leaves) then  -- its hire counts become a view (below)
        drop trigger if exists employees_hire_counts_insert on employees;
        drop trigger if exists employees_hire_counts_update on employees;
        drop trigger if exists employees_hire_counts_delete on employees;
        drop trigger if exists employees_hire_counts_truncate on employees;
    end if;
    foreach v_table in array _data_tables() loop
        if _citus_kind(v_table::regclass) is null and not v_table = any(v_leaves) then
            perform create_reference_table(v_table::regclass);
            perform truncate_local_data_after_distributing_table(v_table::regclass);
            v_done := v_done || format('%s: reference table', v_table);
        end if;
    end loop;
    foreach v_table in array v_leaves loop
        v_shards := _shard_count(v_table::regclass);
        perform create_distributed_table(
            v_table::regclass, (_table_columns(v_table))[1], shard_count := v_shards
        );
        perform truncate_local_data_after_distributing_table(v_table::regclass);
        v_done := v_done || format(
            '%s: distributed by %s, %s shards', v_table, (_table_columns(v_table))[1], v_shards
        );
    end loop;
    perform _reinstate(v_keys);  -- validated on the shards, against the copies
    if _hire_counts_is_table() then
        drop table hire_counts cascade;
        create view public.hire_counts as
        select
            e.department_id,
            e.job_id,
            extract(year from e.hiring_date at time zone 'UTC')::integer as hire_year,
            count(*) filter (where extract(quarter from e.hiring_date at time zone 'UTC') = 1) as q1,
            count(*) filter (where extract(quarter from e.hiring_date at time zone 'UTC') = 2) as q2,
            count(*) filter (where extract(quarter from e.hiring_date at time zone 'UTC') = 3) as q3,
            count(*) filter (where extract(quarter from e.hiring_date at time zone 'UTC') = 4) as q4,
            count(*) as hires,
            now() as updated_at  -- a view is current whenever it is read
        from employees as e
        group by 1, 2, 3;  -- the table's columns (schema/019_hire_counts_by_year.sql)
        grant select on hire_counts to dataarch_api;
        v_done := v_done || 'hire_counts: a view over employees'::text;
    end if;
    return v_done;
end;
$$;

create or replace function engine_status()
returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: {"engine": "postgresql"} or {"engine": "citus", "version",
-- "nodes": [{name, port, role}], "tables": [{table, kind, shards,
-- nodes}]}, for `dataarch db status`.
declare
    v_status jsonb;
begin
    if not _citus_installed() then
        return jsonb_build_object('engine', 'postgresql');
    end if;
    execute $sql$
        select jsonb_build_object(
            'engine', 'citus',
            'version', (select extversion from pg_extension where extname = 'citus'),
            'nodes', (
                select coalesce(jsonb_agg(jsonb_build_object(
                    'name', n.nodename, 'port', n.nodeport,
                    'role', case when n.groupid = 0 then 'coordinator' else 'worker' end
                ) order by n.groupid, n.nodeid), '[]')
                from pg_dist_node as n where n.isactive
            ),
            'tables', (
                select coalesce(jsonb_agg(jsonb_build_object(
                    'table', t.table_name::text,
                    'kind', t.citus_table_type,
                    'shards', t.shard_count,
                    'nodes', (
                        select count(distinct s.nodename || ':' || s.nodeport)
                        from citus_shards as s where s.table_name = t.table_name
                    )
                ) order by t.table_name::text), '[]')
                from citus_tables as t
            )
        )
    $sql$ into v_status;
    return v_status;
end;
$$;

revoke all on function distribute_tables() from public;
revoke all on function _skipping_row_triggers_pays(bigint) from public;
revoke all on function _log_skips_row_triggers(bigint) from public;
revoke all on function _initial_load_from() from public;
