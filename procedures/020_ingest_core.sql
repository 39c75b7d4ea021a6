-- The validation core shared by the HTTP/psql path (ingest_batch) and the CSV
-- migration (ingest_csv_lines). It is set-based: a handful of statements over
-- the whole batch, no per-row loop and no per-row EXCEPTION block.

create or replace function _classify_rows(p_table text, p_rows jsonb)
returns table (
    idx integer,
    reason_code text,
    field text,
    id integer,
    name text,
    hired timestamptz,
    department_id integer,
    job_id integer
)
language sql stable parallel safe
as $$
    -- For each element of p_rows (a JSON array of row objects) in order: its
    -- 0-based index and either the first broken rule (reason_code, field) or
    -- the typed, trimmed values to insert. Checks run in column order, then
    -- unexpected keys, references, and repeats within the batch. duplicate_id
    -- is left to the insert (ON CONFLICT), which also sees concurrent batches.
    -- OFFSET 0 fences keep the planner from re-evaluating each rule in every
    -- later use of its column.
    with spec as (
        select
            _table_columns(p_table) as cols,
            p_table = 'employees' as is_employees
    ),

    fields as (
        -- each field is taken out of its row once; the rules below are
        -- inlined and refer to their argument many times
        select
            (e.ord - 1)::integer as idx,
            e.r,
            spec.cols,
            spec.is_employees,
            e.r -> spec.cols[1] as v_id,
            e.r -> spec.cols[2] as v_name,
            case when spec.is_employees then e.r -> 'hiring_date' end as v_date,
            case when spec.is_employees then e.r -> 'department_id' end as v_department,
            case when spec.is_employees then e.r -> 'job_id' end as v_job
        from jsonb_array_elements(p_rows) with ordinality as e (r, ord)
        cross join spec
        offset 0
    ),

    field_rules as (
        select
            f.*,
            case when jsonb_typeof(f.r) <> 'object' then 'invalid_type' end as p_row,
            _id_problem(f.v_id) as p_id,
            _name_problem(f.v_name) as p_name,
            case when f.is_employees then _datetime_problem(f.v_date) end as p_date,
            case when f.is_employees then _id_problem(f.v_department) end as p_department,
            case when f.is_employees then _id_problem(f.v_job) end as p_job,
            case when jsonb_typeof(f.r) = 'object' and (f.r - f.cols) <> '{}'::jsonb
                then 'unexpected_field' end as p_extra
        from fields as f
        offset 0
    ),

    judged as (
        select
            f.idx,
            f.r,
            f.cols,
            f.is_employees,
            f.v_id,
            f.v_name,
            f.v_date,
            f.v_department,
            f.v_job,
            coalesce(
                f.p_row, f.p_id, f.p_name, f.p_date, f.p_department, f.p_job, f.p_extra
            ) as reason_code,
            case
                when f.p_row is not null then null
                when f.p_id is not null then f.cols[1]
                when f.p_name is not null then f.cols[2]
                when f.p_date is not null then 'hiring_date'
                when f.p_department is not null then 'department_id'
                when f.p_job is not null then 'job_id'
                when f.p_extra is not null then (
                    select min(k) from jsonb_object_keys(f.r - f.cols) as k
                )
            end as field
        from field_rules as f
        offset 0
    ),

    typed as (
        -- the casts cannot fail: they only run on rows that passed every rule
        select
            j.idx,
            j.is_employees,
            j.reason_code,
            j.field,
            case when j.reason_code is null
                then (j.v_id ->> 0)::numeric::integer end as id,
            case when j.reason_code is null
                then btrim(j.v_name ->> 0, E' \t\r\n') end as name,
            case when j.reason_code is null and j.is_employees
                then (j.v_date ->> 0)::timestamptz end as hired,
            case when j.reason_code is null and j.is_employees
                then (j.v_department ->> 0)::numeric::integer end as department_id,
            case when j.reason_code is null and j.is_employees
                then (j.v_job ->> 0)::numeric::integer end as job_id
        from judged as j
        offset 0
    ),

    referenced as (
        select
            t.idx,
            t.field,
            t.id,
            t.name,
            t.hired,
            t.department_id,
            t.job_id,
            case
                when t.reason_code is not null then t.reason_code
                when t.is_employees and not exists (
                    select from departments as d where d.department_id = t.department_id
                ) then 'unknown_department'
                when t.is_employees and not exists (
                    select from jobs as j where j.job_id = t.job_id
                ) then 'unknown_job'
            end as reason_code
        from typed as t
        offset 0
    )

    select
        r.idx,
        case
            when r.reason_code is not null then r.reason_code
            when row_number() over (
                partition by r.reason_code is null, r.id order by r.idx
            ) > 1 then 'duplicate_in_batch'
        end as reason_code,
        case
            when r.reason_code = 'unknown_department' then 'department_id'
            when r.reason_code = 'unknown_job' then 'job_id'
            when r.reason_code is not null then r.field
            when row_number() over (
                partition by r.reason_code is null, r.id order by r.idx
            ) > 1 then (_table_columns(p_table))[1]
        end as field,
        r.id,
        r.name,
        r.hired,
        r.department_id,
        r.job_id
    from referenced as r
    order by r.idx
$$;

create or replace function _insert_rows(p_table text, p_rows jsonb)
returns table (idx integer, reason_code text, field text)
language plpgsql
set search_path = pg_catalog, public
set plan_cache_mode = force_generic_plan
as $$
-- Promise: inserts every valid row of p_rows into p_table and returns every
-- row exactly once: reason_code NULL for an inserted row, else its reason. Rows go in in id order, so two
-- batches with overlapping ids never deadlock; a row whose id is taken, by an
-- earlier row or by a concurrent batch that committed first, is duplicate_id.
begin
    if p_table = 'employees' then
        return query
        with c as materialized (select * from _classify_rows(p_table, p_rows)),
        ins as (
            insert into employees as e (
                employee_id, employee_name, hiring_date, department_id, job_id
            )
            select c.id, c.name, c.hired, c.department_id, c.job_id
            from c where c.reason_code is null
            order by c.id
            on conflict (employee_id) do nothing
            returning e.employee_id
        )
        select
            c.idx,
            case when c.reason_code is null and ins.employee_id is null
                then 'duplicate_id' else c.reason_code end,
            case when c.reason_code is null and ins.employee_id is null
                then 'employee_id' else c.field end
        from c left join ins on c.reason_code is null and ins.employee_id = c.id;
    elsif p_table = 'departments' then
        return query
        with c as materialized (select * from _classify_rows(p_table, p_rows)),
        ins as (
            insert into departments as d (department_id, department_name)
            select c.id, c.name from c where c.reason_code is null
            order by c.id
            on conflict (department_id) do nothing
            returning d.department_id
        )
        select
            c.idx,
            case when c.reason_code is null and ins.department_id is null
                then 'duplicate_id' else c.reason_code end,
            case when c.reason_code is null and ins.department_id is null
                then 'department_id' else c.field end
        from c left join ins on c.reason_code is null and ins.department_id = c.id;
    elsif p_table = 'jobs' then
        return query
        with c as materialized (select * from _classify_rows(p_table, p_rows)),
        ins as (
            insert into jobs as j (job_id, job_name)
            select c.id, c.name from c where c.reason_code is null
            order by c.id
            on conflict (job_id) do nothing
            returning j.job_id
        )
        select
            c.idx,
            case when c.reason_code is null and ins.job_id is null
                then 'duplicate_id' else c.reason_code end,
            case when c.reason_code is null and ins.job_id is null
                then 'job_id' else c.field end
        from c left join ins on c.reason_code is null and ins.job_id = c.id;
    else
        perform _require_table(p_table);  -- raises: only the three tables reach here
    end if;
end;
$$;

create or replace function _ingest_rows(p_table text, p_rows jsonb, p_atomic boolean)
returns table (idx integer, reason_code text, field text)
language plpgsql
set search_path = pg_catalog, public
as $$
-- Promise: as _insert_rows; with p_atomic, either every row is inserted or
-- none is, and then every otherwise valid row is atomic_batch_rejected.
declare
    v_rejected jsonb;
begin
    if not p_atomic then
        return query select * from _insert_rows(p_table, p_rows);
        return;
    end if;
    begin  -- one subtransaction for the whole batch, only in atomic mode
        select jsonb_agg(jsonb_build_array(r.idx, r.reason_code, r.field))
        into v_rejected
        from _insert_rows(p_table, p_rows) as r
        where r.reason_code is not null;
        if v_rejected is null then
            return query select i::integer, null::text, null::text
            from generate_series(0, jsonb_array_length(p_rows) - 1) as i;
        else
            raise exception 'atomic batch rejected' using errcode = 'DAT00';
        end if;
    exception when sqlstate 'DAT00' then
        -- the inserts are undone; v_rejected keeps its value
        return query
        select
            i::integer,
            coalesce(r ->> 1, 'atomic_batch_rejected'),
            r ->> 2
        from generate_series(0, jsonb_array_length(p_rows) - 1) as i
        left join jsonb_array_elements(v_rejected) as r on (r ->> 0)::integer = i
        order by i;
    end;
end;
$$;

revoke all on function _classify_rows(text, jsonb) from public;
revoke all on function _insert_rows(text, jsonb) from public;
revoke all on function _ingest_rows(text, jsonb, boolean) from public;

-- _table_columns stays callable by everyone: it is the data dictionary's
-- column list, and table_checksum (run by the API role) needs it.
grant execute on function _table_columns(text) to public;
