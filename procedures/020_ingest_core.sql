-- The validation core shared by the HTTP/psql path (ingest_batch) and the CSV
-- migration (ingest_csv_lines). Each first stages its rows in the session's
-- pg_temp.incoming_rows, every field as (text, JSON type); _judge_rows
-- applies the rules to each row, _gather_verdicts adds what needs the whole
-- batch (repeated ids), and _insert_rows inserts the valid ones. Set-based:
-- a handful of statements per batch, no per-row loop or EXCEPTION block, and
-- no detour through jsonb for a CSV line.
--
-- Rows judged earlier wait in pg_temp.judged_rows: a large CSV file is
-- judged by several sessions at once (judge_csv_lines), and the others'
-- verdicts are copied into the transaction that inserts. _gather_verdicts
-- adds the rows judged now to them, so a batch is judged once whichever way
-- it came.

create or replace function _prepare_incoming_rows(p_keep_judged boolean default false)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.incoming_rows and pg_temp.judged_rows exist and are
-- empty; with p_keep_judged, judged_rows keeps what it holds. Refuses
-- (DAT10) a temporary object of another's under either name. The tables
-- live as long as the session and are emptied at every commit, so a pooled
-- connection creates them once: tables per batch would churn the catalog
-- and throw away every cached plan that reads them.
begin
    if not _own_temp_table('judged_rows') then
        create temp table judged_rows of judged_row on commit delete rows;
        -- a session of the caller's role pipes verdicts in and out (migrate)
        execute format('grant select, insert on pg_temp.judged_rows to %I', session_user);
    elsif not p_keep_judged and exists (select from pg_temp.judged_rows) then
        truncate pg_temp.judged_rows;  -- verdicts an earlier call left unused
    end if;
    if not _own_temp_table('incoming_rows') then
        create temp table incoming_rows (
            idx bigint not null,  -- 0-based index in a batch, or a CSV line number
            row_type text,        -- JSON type of the row itself; a CSV record is an array
            field_count integer,  -- how many fields an array (a record) holds
            id_text text, id_type text,
            name_text text, name_type text,
            date_text text, date_type text,
            department_text text, department_type text,
            job_text text, job_type text,
            unexpected_field text  -- the first key that is not a column, if any
        ) on commit delete rows;
    elsif exists (select from pg_temp.incoming_rows) then
        truncate pg_temp.incoming_rows;  -- an earlier batch of this transaction
    end if;
end;
$$;

create or replace function _json_text(p_value jsonb)
returns text
language sql immutable parallel safe
as $$
    -- A JSON field's text, as ->> gives it, but a number's in a few
    -- characters whatever its exponent: ->> writes 1e131071 out in full
    -- (131 072 digits; 1000 such rows cost seconds). A number no id could
    -- be stands for itself by the verdict it gets: a fraction is '0.5'
    -- (not an integer), an integer beyond 15 digits '1e15' (out of range);
    -- other rules refuse any number as invalid_type, whatever its text.
    select case
        when jsonb_typeof(p_value) <> 'number' then p_value #>> '{}'
        when p_value::numeric <> trunc(p_value::numeric) then
            case when scale(p_value::numeric) <= 15 then p_value #>> '{}' else '0.5' end
        when abs(p_value::numeric) < 1e15 then trunc(p_value::numeric)::text
        else '1e15'
    end
$$;

create or replace function _stage_json_rows(p_table text, p_rows jsonb)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.incoming_rows holds exactly the elements of p_rows (a JSON
-- array), each field taken out of its row once: from an object by column
-- name, from an array by position (a CSV record's fields, where null, like
-- an empty CSV field, is absent). A number's text is short whatever its
-- exponent (_json_text), unless ingest_batch_json saw that the body holds
-- no exponent: ->> then writes every number out in as many characters as
-- the body holds it, and costs ~45 % less (measured on 1000-row batches).
-- Either way the verdicts are the same (tests/test_properties.py).
declare
    v_cols text[] := _require_table(p_table);
    v_careful constant boolean :=
        current_setting('dataarch.exponents', true) is distinct from 'none';
begin
    perform _prepare_incoming_rows();
    insert into pg_temp.incoming_rows
    select
        e.ord - 1,
        k.kind,
        case when k.kind = 'array' then jsonb_array_length(e.r) end,
        case when v_careful then _json_text(case when k.kind = 'array' then e.r -> 0
            else e.r -> v_cols[1] end)
            when k.kind = 'array' then e.r ->> 0 else e.r ->> v_cols[1] end,
        case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> 0), 'null')
            else jsonb_typeof(e.r -> v_cols[1]) end,
        case when v_careful then _json_text(case when k.kind = 'array' then e.r -> 1
            else e.r -> v_cols[2] end)
            when k.kind = 'array' then e.r ->> 1 else e.r ->> v_cols[2] end,
        case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> 1), 'null')
            else jsonb_typeof(e.r -> v_cols[2]) end,
        case when v_careful then _json_text(case when k.kind = 'array' then e.r -> 2
            else e.r -> v_cols[3] end)
            when k.kind = 'array' then e.r ->> 2 else e.r ->> v_cols[3] end,
        case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> 2), 'null')
            else jsonb_typeof(e.r -> v_cols[3]) end,
        case when v_careful then _json_text(case when k.kind = 'array' then e.r -> 3
            else e.r -> v_cols[4] end)
            when k.kind = 'array' then e.r ->> 3 else e.r ->> v_cols[4] end,
        case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> 3), 'null')
            else jsonb_typeof(e.r -> v_cols[4]) end,
        case when v_careful then _json_text(case when k.kind = 'array' then e.r -> 4
            else e.r -> v_cols[5] end)
            when k.kind = 'array' then e.r ->> 4 else e.r ->> v_cols[5] end,
        case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> 4), 'null')
            else jsonb_typeof(e.r -> v_cols[5]) end,
        case when k.kind = 'object' and (e.r - v_cols) <> '{}'::jsonb then (
            select min(x) from jsonb_object_keys(e.r - v_cols) as x
        ) end
    from jsonb_array_elements(p_rows) with ordinality as e (r, ord)
    cross join lateral (select jsonb_typeof(e.r) as kind) as k;
end;
$$;

create or replace function _judge_rows(p_table text)
returns setof judged_row
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: for each row of pg_temp.incoming_rows, on its own, either the
-- first broken rule (reason_code, field) or the typed, trimmed values to
-- insert. Checks run in column order, then unexpected keys, then
-- references. OFFSET 0 fences keep the planner from re-evaluating each
-- (inlined) rule in every later use of its result.
begin
    return query
    with rules as (
        select
            i.*,
            spec.cols,
            spec.is_employees,
            case
                -- a line too long for the reader to read whole (csvrecords.py)
                when i.row_type = 'too_long' then 'too_long'
                -- a string is a CSV record its sender could not read
                when i.row_type = 'string' then 'malformed_line'
                when i.row_type not in ('object', 'array') then 'invalid_type'
                when i.row_type = 'array' and i.field_count <> cardinality(spec.cols)
                    then 'malformed_line'
            end as p_row,
            _id_problem(i.id_text, i.id_type) as p_id,
            _name_problem(i.name_text, i.name_type) as p_name,
            case when spec.is_employees
                then _datetime_problem(i.date_text, i.date_type) end as p_date,
            case when spec.is_employees
                then _id_problem(i.department_text, i.department_type) end as p_department,
            case when spec.is_employees
                then _id_problem(i.job_text, i.job_type) end as p_job,
            case when i.unexpected_field is not null then 'unexpected_field' end as p_extra
        from pg_temp.incoming_rows as i
        cross join (
            select _table_columns(p_table) as cols, p_table = 'employees' as is_employees
        ) as spec
        offset 0
    ),

    judged as (
        select
            r.idx,
            r.is_employees,
            coalesce(
                r.p_row, r.p_id, r.p_name, r.p_date, r.p_department, r.p_job, r.p_extra
            ) as reason_code,
            case
                when r.p_row is not null then null
                when r.p_id is not null then r.cols[1]
                when r.p_name is not null then r.cols[2]
                when r.p_date is not null then 'hiring_date'
                when r.p_department is not null then 'department_id'
                when r.p_job is not null then 'job_id'
                when r.p_extra is not null then r.unexpected_field
            end as field,
            r.p_id is null as id_usable,
            r.id_text,
            r.name_text,
            r.date_text,
            r.department_text,
            r.job_text
        from rules as r
        offset 0
    ),

    typed as (
        -- the casts cannot fail: they only run on fields that passed their rule.
        -- A rejected row keeps its id when the id itself is usable: a later
        -- row with that id resolves the rejection.
        select
            j.idx,
            j.is_employees,
            j.reason_code,
            j.field,
            case when j.id_usable then j.id_text::numeric::integer end as id,
            case when j.reason_code is null
                then btrim(j.name_text, E' \t\r\n') end as name,
            case when j.reason_code is null and j.is_employees
                then j.date_text::timestamptz end as hired,
            case when j.reason_code is null and j.is_employees
                then j.department_text::numeric::integer end as department_id,
            case when j.reason_code is null and j.is_employees
                then j.job_text::numeric::integer end as job_id
        from judged as j
        offset 0
    )

    -- NOT IN over a sub-select is one hashed lookup a row; _insert_rows
    -- checks again under lock
    select
        v.idx,
        v.verdict as reason_code,
        case
            when v.verdict = 'unknown_department' then 'department_id'
            when v.verdict = 'unknown_job' then 'job_id'
            else v.field
        end as field,
        v.id,
        v.name,
        v.hired,
        v.department_id,
        v.job_id
    from (
        select
            t.*,
            case
                when t.reason_code is not null then t.reason_code
                when t.is_employees and t.department_id not in (
                    select d.department_id from departments as d
                ) then 'unknown_department'
                when t.is_employees and t.job_id not in (select j.job_id from jobs as j)
                    then 'unknown_job'
            end as verdict
        from typed as t
        offset 0
    ) as v;
end;
$$;

create or replace function _gather_verdicts(p_table text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.judged_rows holds the verdict on every row of the batch:
-- those judged earlier (a large CSV file's, by several sessions) and those
-- of pg_temp.incoming_rows, judged now. A valid row whose id an earlier
-- valid row of the batch carries is duplicate_in_batch: the first
-- occurrence wins. Hashed, not sorted: one pass groups the ids, and only
-- the repeats are updated (a window over a million rows sorted them all,
-- 2.4 s). Called once a batch.
begin
    if exists (select from pg_temp.incoming_rows) then
        insert into pg_temp.judged_rows select * from _judge_rows(p_table);
    end if;
    update pg_temp.judged_rows as r
    set reason_code = 'duplicate_in_batch', field = (_table_columns(p_table))[1]
    from (
        select j.id, min(j.idx) as first_idx
        from pg_temp.judged_rows as j
        where j.reason_code is null
        group by j.id
        having count(*) > 1
    ) as repeated
    where r.reason_code is null and r.id = repeated.id and r.idx > repeated.first_idx;
end;
$$;

create or replace function _recheck_references(p_lock boolean)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a valid employee row of pg_temp.judged_rows whose department or
-- job does not exist now is unknown_department or unknown_job. With p_lock,
-- the departments and jobs the valid rows reference are first locked FOR
-- KEY SHARE until commit, as the foreign keys' per-row triggers would lock
-- them: a parent deleted concurrently is seen as gone, or its DELETE waits
-- for this transaction and then fails on the new reference. (Citus cannot
-- lock a reference table's rows in the statement that inserts into a
-- distributed table: hence statements of their own.)
begin
    if p_lock then
        perform from departments as d
        where d.department_id in (
            select r.department_id from pg_temp.judged_rows as r where r.reason_code is null
        )
        for key share of d;
        perform from jobs as j
        where j.job_id in (
            select r.job_id from pg_temp.judged_rows as r where r.reason_code is null
        )
        for key share of j;
    end if;
    update pg_temp.judged_rows as r
    set
        reason_code = case when g.department_gone then 'unknown_department' else 'unknown_job' end,
        field = case when g.department_gone then 'department_id' else 'job_id' end
    from (
        -- NOT IN over a sub-select is one hashed lookup a row
        select
            x.idx,
            x.department_id not in (select d.department_id from departments as d)
            as department_gone,
            x.job_id not in (select j.job_id from jobs as j) as job_gone
        from pg_temp.judged_rows as x
        where x.reason_code is null
        offset 0
    ) as g
    where r.idx = g.idx and (g.department_gone or g.job_gone);
end;
$$;

create or replace function _insert_judged(p_table text, p_alone boolean, p_batch_id bigint)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the valid rows of pg_temp.judged_rows are in p_table, each with
-- its lineage (batch p_batch_id, its position in the batch), and a row
-- whose id was taken, by a committed row or by a concurrent batch that
-- committed first, is duplicate_id instead. Rows go in in id order, so two
-- batches with overlapping ids never deadlock. p_alone: this transaction
-- holds p_table exclusively (an initial load), so the taken ids are known
-- before the insert, which needs no ON CONFLICT (2 s of a million rows),
-- and the hire counts are added by one aggregate (070).
declare
    v_cols constant text[] := _table_columns(p_table);
    v_insert constant text := format(
        'insert into %I as t (%s, batch_id, batch_position) select %s, %s, r.idx'
        ' from pg_temp.judged_rows as r where r.reason_code is null order by r.id',
        p_table,
        array_to_string(v_cols, ', '),
        array_to_string(
            (array['r.id', 'r.name', 'r.hired', 'r.department_id', 'r.job_id'])[
                1:cardinality(v_cols)
            ],
            ', '
        ),
        coalesce(p_batch_id::text, 'null')
    );
    v_taken constant text := format(
        'update pg_temp.judged_rows as r set reason_code = %L, field = %L'
        ' where r.reason_code is null and r.id %%s',
        'duplicate_id', v_cols[1]
    );
begin
    if not p_alone then
        -- what ON CONFLICT found taken is a duplicate_id; NOT IN stays one
        -- hashed lookup a row (as a join, the planner's guess of a few rows
        -- chose two sorts: 0.5 s a million)
        execute format(
            'with ins as (%s on conflict (%I) do nothing returning t.%2$I as id) '
            || format(v_taken, 'not in (select ins.id from ins)'),
            v_insert, v_cols[1]
        );
    else
        execute format(v_taken, format('in (select t.%I from %I as t)', v_cols[1], p_table));
        if p_table = 'employees' and _hire_counts_is_table() then
            perform _insert_counting_hires(v_insert);
        else
            execute v_insert;
        end if;
    end if;
end;
$$;

create or replace function _insert_rows(
    p_table text, p_batch_id bigint, p_alone boolean default false
)
returns table (idx bigint, reason_code text, field text, record_id integer)
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: inserts every valid row of pg_temp.incoming_rows and
-- pg_temp.judged_rows into p_table (and empties judged_rows), and returns
-- every row exactly once: reason_code NULL for an inserted row, else its
-- reason; record_id is the row's id, when it has a usable one. Each row
-- records p_batch_id and its position in the batch (lineage). Never an
-- orphan: references were checked when the rows were judged; where
-- _skips_row_triggers allows (procedures/005_engine.sql), they are locked
-- and checked again and the foreign keys' per-row triggers are skipped.
-- Elsewhere the triggers check each row, and a parent deleted between the
-- judging and the insert (23503) has the references checked again, up to
-- three tries in all. p_alone: the caller holds p_table exclusively and
-- its referenced tables in SHARE mode, with the foreign keys suspended
-- (an initial load): references are checked again, without row locks.
declare
    v_lock_references constant boolean :=
        p_table = 'employees' and not p_alone and _skips_row_triggers('employees');
    v_role constant text := current_setting('session_replication_role');
    v_attempt integer := 1;
begin
    perform _require_table(p_table);
    perform _gather_verdicts(p_table);
    loop
        begin
            if p_table = 'employees' and (p_alone or v_lock_references or v_attempt > 1) then
                perform _recheck_references(v_lock_references);
            end if;
            if v_lock_references then
                perform set_config('session_replication_role', 'replica', true);
            end if;
            perform _insert_judged(p_table, p_alone, p_batch_id);
            if v_lock_references then
                perform set_config('session_replication_role', v_role, true);
            end if;
            exit;
        exception when foreign_key_violation then
            if v_attempt = 3 then
                raise;
            end if;
            v_attempt := v_attempt + 1;
        end;
    end loop;
    return query select r.idx, r.reason_code, r.field, r.id from pg_temp.judged_rows as r;
    truncate pg_temp.judged_rows;  -- used: they belong to no later batch
end;
$$;

create or replace function _resolve_rejections(p_table text, p_batch_id bigint, p_ids integer[])
returns integer
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every open rejection of p_table from a batch other than
-- p_batch_id whose row carried one of p_ids (the ids p_batch_id inserted)
-- is resolved by p_batch_id, now. Returns how many. Set-based: the open
-- rejections (a partial index holds only them) against the ids, hashed.
declare
    v_resolved integer;
begin
    update ingest_errors as e
    set resolved_by_batch = p_batch_id, resolved_at = now()
    where e.table_name = p_table and e.resolved_at is null and e.closed_at is null
        and e.batch_id <> p_batch_id
        and e.record_id in (select unnest(p_ids));
    get diagnostics v_resolved = row_count;
    return v_resolved;
end;
$$;

create or replace function _finish_batch(
    p_batch_id bigint, p_table text, p_submitted bigint, p_inserted_ids integer[],
    p_rejected bigint
)
returns integer
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the ledger's tail, one for every batch that loads rows (a JSON
-- batch, a CSV file, a retry): the open rejections its rows resolve are
-- resolved by it, and it is finished with its counts, which the count
-- invariant (inserted + rejected = submitted, a CHECK) holds to. Returns
-- how many rejections it resolved.
declare
    v_resolved integer := _resolve_rejections(p_table, p_batch_id, p_inserted_ids);
begin
    update ingest_batches
    set submitted = p_submitted, inserted = cardinality(p_inserted_ids),
        rejected = p_rejected, finished_at = clock_timestamp()
    where batch_id = p_batch_id;
    return v_resolved;
end;
$$;

create or replace function _ingest_rows(
    p_table text, p_rows jsonb, p_atomic boolean, p_batch_id bigint
)
returns table (idx integer, reason_code text, field text, record_id integer)
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: as _insert_rows, for the JSON array p_rows of batch p_batch_id;
-- with p_atomic, either every row is inserted or none is, and then every
-- otherwise valid row is atomic_batch_rejected.
declare
    v_outcome jsonb;  -- [[idx, reason_code, field, record_id], ...]
begin
    perform _stage_json_rows(p_table, p_rows);
    if not p_atomic then
        return query
        select r.idx::integer, r.reason_code, r.field, r.record_id
        from _insert_rows(p_table, p_batch_id) as r;
        return;
    end if;
    begin  -- one subtransaction for the whole batch, only in atomic mode
        select jsonb_agg(jsonb_build_array(r.idx, r.reason_code, r.field, r.record_id))
        into v_outcome
        from _insert_rows(p_table, p_batch_id) as r;
        if exists (select from jsonb_array_elements(v_outcome) as o where o ->> 1 is not null) then
            raise exception 'atomic batch rejected' using errcode = 'DAT00';
        end if;
    exception when sqlstate 'DAT00' then
        -- the inserts are undone; v_outcome keeps its value, and the rows
        -- that went in are now atomic_batch_rejected
        v_outcome := (
            select jsonb_agg(case when o ->> 1 is null
                then jsonb_set(o, '{1}', '"atomic_batch_rejected"') else o end)
            from jsonb_array_elements(v_outcome) as o
        );
    end;
    return query
    select (o ->> 0)::integer, o ->> 1, o ->> 2, (o ->> 3)::integer
    from jsonb_array_elements(v_outcome) as o
    order by 1;
end;
$$;

revoke all on function _prepare_incoming_rows(boolean) from public;
revoke all on function _stage_json_rows(text, jsonb) from public;
revoke all on function _json_text(jsonb) from public;
revoke all on function _judge_rows(text) from public;
revoke all on function _gather_verdicts(text) from public;
revoke all on function _recheck_references(boolean) from public;
revoke all on function _insert_judged(text, boolean, bigint) from public;
revoke all on function _insert_rows(text, bigint, boolean) from public;
revoke all on function _ingest_rows(text, jsonb, boolean, bigint) from public;
revoke all on function _resolve_rejections(text, bigint, integer[]) from public;
revoke all on function _finish_batch(bigint, text, bigint, integer[], bigint) from public;
