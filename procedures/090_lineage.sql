-- Lineage and undo. Every row of the HR tables records the batch that wrote
-- it (schema/016): row_lineage says where a row came from, and the
-- rejections of its id that came before it (the fix loop); batches and
-- batch_detail list the batches; revert_batch takes out exactly the rows
-- one batch inserted, as a batch of its own. bookkeeping_problems checks
-- the rule every operation keeps: each record that says "these rows are in
-- the table" is true.

create or replace function bookkeeping_problems()
returns table (problem text, detail text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
-- room to hash the NOT IN (subquery) of ids below: past work_mem the planner
-- rescans the table once a rejection (a CI run sat minutes in it); a
-- correlated NOT EXISTS would plan better, but Citus refuses it
set work_mem = '256MB'
as $$
-- Promise: every record that says rows are in a table and is false, none
-- when the rule holds: a migrated file or a stored answer whose batch's
-- rows are not all there, a batch that says it was reverted while its rows
-- are there, a rejection resolved by an id no row has, and hire counts
-- that differ from a recount. Batches of earlier releases (no lineage) are
-- not checked.
declare
    v_table text;
    v_id text;
begin
    foreach v_table in array _data_tables() loop
        v_id := (_table_columns(v_table))[1];
        return query execute format($sql$
            with present as (
                select t.batch_id, count(*) as n from %1$I as t
                where t.batch_id is not null group by t.batch_id
            )
            select 'migrated file, rows gone'::text, format('%%s batch %%s (%%s)',
                m.file_name, b.batch_id, %2$L)
            from migrated_files as m
            join ingest_batches as b on b.batch_id = m.batch_id
            left join present as p on p.batch_id = b.batch_id
            where b.table_name = %2$L and b.lineage and b.inserted > coalesce(p.n, 0)
            union all
            select 'stored answer, rows gone', format('key %%s, batch %%s (%%s)',
                k.idempotency_key, b.batch_id, %2$L)
            from idempotency_keys as k
            join ingest_batches as b on b.batch_id = k.batch_id
            left join present as p on p.batch_id = b.batch_id
            where b.table_name = %2$L and b.lineage and b.inserted > coalesce(p.n, 0)
            union all
            select 'reverted batch, rows there', format('batch %%s (%%s): %%s rows',
                p.batch_id, %2$L, p.n)
            from present as p
            join ingest_batches as b on b.batch_id = p.batch_id
            where b.reverted_by is not null
            union all
            select 'resolved by a row that is gone', format('rejection %%s (%%s %%s)',
                e.error_id, %2$L, e.record_id)
            from ingest_errors as e
            where e.table_name = %2$L and e.resolved_at is not null
                and e.record_id not in (select t.%3$I from %1$I as t)
        $sql$, v_table, v_table, v_id);
    end loop;
    if _hire_counts_is_table() then
        return query
        select 'hire counts differ from a recount', format('%s', coalesce(c, r))
        from (
            select department_id, job_id, hire_year, q1, q2, q3, q4
            from hire_counts where (q1, q2, q3, q4) <> (0, 0, 0, 0)
        ) as c
        full join (
            select
                department_id, job_id,
                extract(year from hiring_date at time zone 'UTC')::integer as hire_year,
                count(*) filter (where extract(quarter from hiring_date at time zone 'UTC') = 1) as q1,
                count(*) filter (where extract(quarter from hiring_date at time zone 'UTC') = 2) as q2,
                count(*) filter (where extract(quarter from hiring_date at time zone 'UTC') = 3) as q3,
                count(*) filter (where extract(quarter from hiring_date at time zone 'UTC') = 4) as q4
            from employees group by 1, 2, 3
        ) as r using (department_id, job_id, hire_year)
        where (c.q1, c.q2, c.q3, c.q4) is distinct from (r.q1, r.q2, r.q3, r.q4);
    end if;
end;
$$;

create or replace function _batch_json(p_batch ingest_batches)
returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a batch as the API and the CLI show it: the log's row, its kind
-- (api, psql, csv, retry, restore, revert), the file (name and SHA-256) of
-- a CSV batch and the Idempotency-Key of an API one.
begin
    return to_jsonb(p_batch) || jsonb_build_object(
        'kind', split_part(p_batch.source, ':', 1),
        'file', (
            select jsonb_build_object('name', m.file_name, 'sha256', m.sha256)
            from migrated_files as m where m.batch_id = p_batch.batch_id
        ),
        'idempotency_key', (
            select k.idempotency_key from idempotency_keys as k
            where k.batch_id = p_batch.batch_id
        )
    );
end;
$$;

create or replace function row_lineage(p_table text, p_id integer)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: where the row of p_table with id p_id came from, or NULL when
-- there is none: {"table", "id", "row", "batch" (its batch, or NULL for a
-- row of an earlier release), "position" ({"line"} in a CSV file, {"index"}
-- in an API batch, {"rejection", "line", "file"} for a retried CSV line),
-- "rejections" (every rejection of that id in p_table, oldest first: the
-- fix loop before it, and attempts rejected since)}.
declare
    v_id_column constant text := (_require_table(p_table))[1];  -- DAT01 before any lock
    v_row jsonb;
    v_batch_id bigint;
    v_position bigint;
    -- no variable of type ingest_batches: a variable of a table's row type
    -- locks the table when the function is compiled, before its first
    -- statement can lock anything
    v_source text;
    v_batch jsonb;
begin
    perform _lock_tables_to_read(array[p_table, 'ingest_batches', 'ingest_errors']);
    execute format(
        'select to_jsonb(t) - %L - %L, t.batch_id, t.batch_position from %I as t where t.%I = $1',
        'batch_id', 'batch_position', p_table, v_id_column
    ) into v_row, v_batch_id, v_position using p_id;
    if v_row is null then
        return null;
    end if;
    select b.source, _batch_json(b) into v_source, v_batch
    from ingest_batches as b where b.batch_id = v_batch_id;
    return jsonb_build_object(
        'table', p_table, 'id', p_id, 'row', v_row,
        'batch', v_batch,
        'position', case
            when v_source = 'retry' then (  -- its place is the rejection it retried
                select jsonb_build_object(
                    'rejection', e.error_id, 'line', e.line_number, 'file', e.source_file
                )
                from ingest_errors as e where e.error_id = v_position
            )
            when v_source like 'csv:%'
                then jsonb_build_object('line', v_position)
            when v_batch is not null
                then jsonb_build_object('index', v_position)
        end,
        'rejections', coalesce((
            select jsonb_agg(jsonb_build_object(
                'error_id', e.error_id, 'batch_id', e.batch_id, 'source', e.source,
                'line_number', e.line_number, 'row_index', e.row_index,
                'reason_code', e.reason_code, 'message', e.message,
                'received_at', e.received_at, 'status', _rejection_status(e)
            ) order by e.error_id)
            from ingest_errors as e
            where e.table_name = p_table and e.record_id = p_id
        ), '[]')
    );
end;
$$;

create or replace function batches(
    p_table text default null, p_kind text default null,
    p_limit integer default 50, p_offset integer default 0
)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a page of the batches, newest first, of p_table and of the kind
-- p_kind (api, psql, csv, retry, restore, revert) when given:
-- {"total", "limit", "offset", "items": [...]}.
begin
    perform _lock_tables_to_read(array['ingest_batches']);
    if p_table is not null then
        perform _require_table(p_table);
    end if;
    return (
        with matching as (
            select b.* from ingest_batches as b
            where (p_table is null or b.table_name = p_table)
                and (p_kind is null or split_part(b.source, ':', 1) = p_kind)
        )
        select jsonb_build_object(
            'total', (select count(*) from matching),
            'limit', p_limit, 'offset', p_offset,
            'items', coalesce((
                select jsonb_agg(_batch_json(page) order by page.batch_id desc)
                from (
                    select * from matching order by batch_id desc limit p_limit offset p_offset
                ) as page
            ), '[]')
        )
    );
end;
$$;

create or replace function batch_detail(p_batch_id bigint, p_rejections integer default 100)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: one batch as batches() lists it, with how many of the rows it
-- inserted are in its table now ("present"), and its first p_rejections
-- rejections; NULL when there is no such batch.
declare
    v_table text;  -- no variable of type ingest_batches: see row_lineage
    v_batch jsonb;
    v_present bigint;
begin
    -- every data table: which one the batch loaded is known only once read
    perform _lock_tables_to_read(_data_tables() || array['ingest_batches', 'ingest_errors']);
    select b.table_name, _batch_json(b) into v_table, v_batch
    from ingest_batches as b where b.batch_id = p_batch_id;
    if v_batch is null then
        return null;
    end if;
    execute format('select count(*) from %I where batch_id = $1', v_table)
    into v_present using p_batch_id;
    return v_batch || jsonb_build_object(
        'present', v_present,
        'rejections', coalesce((
            select jsonb_agg(to_jsonb(e) - 'raw_row' - 'raw_line' || jsonb_build_object(
                'status', _rejection_status(e)) order by e.error_id)
            from (
                select * from ingest_errors as x where x.batch_id = p_batch_id
                order by x.error_id limit p_rejections
            ) as e
        ), '[]')
    );
end;
$$;

create or replace function _dependent_batches(p_batch_id bigint)
returns table (batch_id bigint, table_name text, rows_count bigint)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the other batches whose rows reference rows batch p_batch_id
-- inserted (employees of a department it inserted), with how many such
-- rows; batch_id NULL for rows of an earlier release (no lineage).
declare
    v_table text;
    v_key record;
begin
    select b.table_name into v_table from ingest_batches as b where b.batch_id = p_batch_id;
    for v_key in
        select f.conrelid::regclass::text as child, a.attname::text as child_column,
            p.attname::text as parent_column
        from pg_constraint as f
        join pg_attribute as a on a.attrelid = f.conrelid and a.attnum = f.conkey[1]
        join pg_attribute as p on p.attrelid = f.confrelid and p.attnum = f.confkey[1]
        where f.contype = 'f' and f.confrelid = v_table::regclass and cardinality(f.conkey) = 1
    loop
        return query execute format(
            'select c.batch_id, %L::text, count(*) from %I as c'
            ' where c.%I in (select t.%I from %I as t where t.batch_id = $1)'
            ' and c.batch_id is distinct from $1 group by c.batch_id',
            v_key.child, v_key.child, v_key.child_column, v_key.parent_column, v_table
        ) using p_batch_id;
    end loop;
end;
$$;

create or replace function _revertible(p_batch ingest_batches, p_batch_id bigint)
returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: returns when batch p_batch_id (p_batch) may be reverted; else
-- DAT01 (no such batch) or DAT12 saying why not and what to do instead.
begin
    if p_batch.batch_id is null then
        raise exception 'no batch %', p_batch_id
            using errcode = 'DAT01', hint = '`dataarch batches` lists them.';
    end if;
    if p_batch.source = 'revert' then
        raise exception 'batch % is a revert (of batch %): a revert is not reverted',
            p_batch_id, p_batch.reverts
            using errcode = 'DAT12',
                hint = 'Load the rows again instead (dataarch migrate or upload the file).';
    end if;
    if p_batch.source like 'restore:%' then
        raise exception 'batch % is a restore: it replaced the whole table', p_batch_id
            using errcode = 'DAT12',
                hint = 'Restore another backup instead (dataarch restore --file ...).';
    end if;
    if p_batch.reverted_by is not null then
        raise exception 'batch % was reverted already, by batch %', p_batch_id, p_batch.reverted_by
            using errcode = 'DAT12';
    end if;
    if not coalesce(p_batch.lineage, false) then
        raise exception 'batch % was loaded by an earlier release: its rows do not record it',
            p_batch_id
            using errcode = 'DAT12',
                hint = 'Delete its rows by hand, by their ids (ingest_batches and the file say which).';
    end if;
end;
$$;

create or replace function _batch_busy(p_batch_id bigint, p_table text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: raises 55P03 for a revert of batch p_batch_id (or its plan) whose
-- wait ran out where nothing named the holder (a lock wait _lock_tables
-- did not take): 'batch N is busy: ... holds it' (_table_busy), naming who
-- holds p_table (NULL: not known yet), the ingest log or the tables that
-- reference p_table. Nothing changed.
begin
    perform _table_busy(
        format('batch %s', p_batch_id),
        array['ingest_batches', 'ingest_errors']
        || case when p_table is null then '{}'::text[]
            else p_table || _referencing_tables(p_table::regclass) end,
        'Nothing changed: revert it again when that has finished.'
    );
end;
$$;

create or replace function revert_plan(p_batch_id bigint, p_cascade boolean default false)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: what revert_batch(p_batch_id, p_cascade) would do, changing
-- nothing: {"batches": [{batch_id, table_name, rows}] in the order they
-- would be reverted (dependants first), "refused": why not, or NULL}.
declare
    v_table text;  -- no variable of type ingest_batches: see row_lineage
    v_dependants jsonb;
    v_rows bigint;
    v_message text;
begin
    -- every data table: which ones the batch and its dependants are in is
    -- known only once read (inside revert_batch, it holds them already)
    perform _lock_tables_to_read(_data_tables() || array['ingest_batches', 'ingest_errors']);
    perform _revertible(
        (select b from ingest_batches as b where b.batch_id = p_batch_id), p_batch_id
    );
    v_table := (select b.table_name from ingest_batches as b where b.batch_id = p_batch_id);
    select coalesce(jsonb_agg(jsonb_build_object(
        'batch_id', d.batch_id, 'table_name', d.table_name, 'rows', d.rows_count
    ) order by d.batch_id), '[]')
    into v_dependants from _dependent_batches(p_batch_id) as d;
    if jsonb_array_length(v_dependants) > 0 and not p_cascade then
        return jsonb_build_object('batches', '[]'::jsonb, 'dependants', v_dependants,
            'refused', format('rows of batch(es) %s reference rows batch %s inserted',
                (select string_agg(coalesce(d ->> 'batch_id', 'of an earlier release'), ', ')
                 from jsonb_array_elements(v_dependants) as d), p_batch_id));
    end if;
    if exists (select from jsonb_array_elements(v_dependants) as d where d -> 'batch_id' = 'null') then
        return jsonb_build_object('batches', '[]'::jsonb, 'dependants', v_dependants,
            'refused', 'rows of an earlier release (no batch recorded) reference its rows');
    end if;
    execute format('select count(*) from %I where batch_id = $1', v_table)
    into v_rows using p_batch_id;
    return jsonb_build_object(
        'batches', v_dependants || jsonb_build_object(
            'batch_id', p_batch_id, 'table_name', v_table, 'rows', v_rows
        ),
        'dependants', v_dependants, 'refused', null
    );
exception when lock_not_available then  -- a table it reads is held (a restore)
    get stacked diagnostics v_message = message_text;
    if _names_the_holder(v_message) then
        raise;  -- named already (a plan inside a revert: _lock_tables)
    end if;
    perform _batch_busy(p_batch_id, v_table);
end;
$$;

create or replace function _revert_one(p_batch_id bigint, p_table text)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the rows batch p_batch_id inserted into p_table are gone, every
-- rejection of p_table resolved by a row that is gone is open again (those
-- its rows resolved, whichever batch is recorded as resolving them), its
-- own rejections are closed
-- (their load was undone), its file may load again and its stored answer
-- is forgotten; the revert is a batch of its own, naming it. Returns
-- {"batch_id" (the revert's), "reverts", "table", "removed", "reopened"}.
declare
    v_removed bigint;
    v_reopened integer;
    v_revert bigint;
begin
    execute format('delete from %I where batch_id = $1', p_table) using p_batch_id;
    get diagnostics v_removed = row_count;
    insert into ingest_batches (table_name, source, reverts, removed, finished_at)
    values (p_table, 'revert', p_batch_id, v_removed, clock_timestamp())
    returning batch_id into v_revert;
    update ingest_batches set reverted_by = v_revert where batch_id = p_batch_id;
    -- by the rows gone, not by the batch recorded as resolving: a restore
    -- may have put this batch's row back where another's had resolved it
    v_reopened := _reopen_resolved_by_gone_rows(p_table);
    update ingest_errors as e
    set closed_at = now(), closed_by = 'revert',
        close_note = format('batch %s was reverted by batch %s', p_batch_id, v_revert)
    from (
        select x.error_id from ingest_errors as x
        where x.batch_id = p_batch_id and x.resolved_at is null and x.closed_at is null
        order by x.error_id for no key update  -- the one order for rows (procedures/003)
    ) as l
    where e.error_id = l.error_id;
    delete from migrated_files where batch_id = p_batch_id;
    delete from idempotency_keys where batch_id = p_batch_id;
    return jsonb_build_object('batch_id', v_revert, 'reverts', p_batch_id, 'table', p_table,
        'removed', v_removed, 'reopened', v_reopened);
end;
$$;

create or replace function _lock_batches_to_revert(p_plan jsonb)
returns boolean
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the ingest_batches rows of p_plan's batches are locked until the
-- transaction ends, in batch_id order (procedures/003, rule 4), waiting
-- for a revert of any of them that holds one; true when none of them has
-- been reverted since the plan was read. Two reverts of one batch are one
-- revert, then a refusal, never two that both say they removed its rows.
begin
    -- every row is locked: the aggregate reads them all (a condition here
    -- could be pushed below the lock, and lock none)
    return (
        select coalesce(bool_and(locked.reverted_by is null), true)
        from (
            select b.reverted_by from ingest_batches as b
            where b.batch_id in (
                select (s ->> 'batch_id')::bigint from jsonb_array_elements(p_plan -> 'batches') as s
            )
            order by b.batch_id for no key update
        ) as locked
    );
end;
$$;

create or replace function revert_batch(p_batch_id bigint, p_cascade boolean default false)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: in the caller's transaction, exactly the rows batch p_batch_id
-- inserted are removed (_revert_one), and with p_cascade first those of the
-- batches whose rows reference them; refused (DAT13, naming them) when
-- such batches exist and p_cascade is false, and (DAT12) for a batch that
-- cannot be reverted. Hire counts follow (the triggers). Locks its table
-- and, against writers, the tables that reference it, all or none in the
-- one order (procedures/003), before it reads them. A row it must change
-- that another transaction holds (a parent row an ingest locked FOR KEY
-- SHARE, a rejection being closed) is waited for up to lock_timeout, then
-- 55P03 names who holds the tables it touches. Two reverts of one batch
-- at once are one revert: the second waits for the first and is refused
-- (DAT12, reverted already). Returns {"reverted": [...]} in the order done.
declare
    v_plan jsonb;
    v_step jsonb;
    v_done jsonb := '[]';
    v_table text;
    v_message text;
begin
    -- Citus: before any read, since a revert may write employees' shards
    -- and then a reference table in one transaction
    perform _one_connection_per_node();
    -- the tables first, then the plan (procedures/003): a plan read first
    -- would hold them while the revert waits to lock them, and a restore
    -- holding the one and waiting for the other would never end. Its
    -- dependants can only be in the tables that reference it.
    v_table := (select b.table_name from ingest_batches as b where b.batch_id = p_batch_id);
    if v_table is not null then
        perform _lock_tables(
            jsonb_build_object(v_table, 'row exclusive', 'ingest_batches', 'row exclusive')
            || coalesce((
                select jsonb_object_agg(c, 'share row exclusive')
                from unnest(_referencing_tables(v_table::regclass)) as c
            ), '{}')
        );
    end if;
    loop
        v_plan := revert_plan(p_batch_id, p_cascade);
        if v_plan ->> 'refused' is not null then
            raise exception 'batch % is not reverted: %', p_batch_id, v_plan ->> 'refused'
                using errcode = 'DAT13',
                    hint = 'Revert those batches first, or ask for them too (--cascade).';
        end if;
        -- a revert of one of them that ran meanwhile is planned around (or,
        -- of this batch, refused: reverted already)
        exit when _lock_batches_to_revert(v_plan);
    end loop;
    for v_step in select s from jsonb_array_elements(v_plan -> 'batches') as s loop
        v_done := v_done || _revert_one((v_step ->> 'batch_id')::bigint, v_step ->> 'table_name');
    end loop;
    return jsonb_build_object('reverted', v_done);
exception when lock_not_available then
    get stacked diagnostics v_message = message_text;
    if _names_the_holder(v_message) then
        raise;  -- _lock_tables, or the plan, named the holder
    end if;
    perform _batch_busy(p_batch_id, v_table);
end;
$$;

-- revert_plan and what it calls stay callable by everyone (the API role's
-- dry run): they read only what the caller may read, and change nothing.
revoke all on function bookkeeping_problems() from public;
revoke all on function _revert_one(bigint, text) from public;
revoke all on function _lock_batches_to_revert(jsonb) from public;
revoke all on function revert_batch(bigint, boolean) from public;
grant execute on function revert_batch(bigint, boolean) to dataarch_api;
