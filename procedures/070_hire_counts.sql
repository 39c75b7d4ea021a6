-- Keeps hire_counts equal to a recount of employees after every statement.
-- Statement-level triggers with transition tables: one set-based upsert per
-- INSERT/UPDATE/DELETE, whatever the number of rows, and keys are upserted
-- in sorted order so concurrent batches never deadlock on them.

create or replace function _hire_count_deltas(p_changed text)
returns text
language sql immutable
as $$
    -- The query that sums the rows of p_changed, a query of (department_id,
    -- job_id, hiring_date, sign), by UTC year, department and job, a column
    -- a quarter: (department_id, job_id, hire_year, q1, q2, q3, q4). Text,
    -- not a function that runs it: a trigger's transition tables are
    -- visible only to the trigger function's own statements. A row's year
    -- and quarter are computed once (OFFSET 0 keeps the planner from
    -- copying them into every aggregate) and as date_part's
    -- double, not extract's numeric: a million rows 0.44 s instead of 0.85.
    select format($sql$
        select
            department_id,
            job_id,
            y as hire_year,
            coalesce(sum(sign) filter (where q = 1), 0) as q1,
            coalesce(sum(sign) filter (where q = 2), 0) as q2,
            coalesce(sum(sign) filter (where q = 3), 0) as q3,
            coalesce(sum(sign) filter (where q = 4), 0) as q4
        from (
            select
                department_id,
                job_id,
                sign,
                date_part('year', hiring_date at time zone 'UTC')::integer as y,
                date_part('quarter', hiring_date at time zone 'UTC')::integer as q
            from (%s) as changed
            offset 0
        ) as dated
        group by department_id, job_id, y
    $sql$, p_changed)
$$;

create or replace function _hire_counts_upsert(p_changed text)
returns text
language sql immutable
as $$
    -- The statement that adds to hire_counts the rows of p_changed (as
    -- _hire_count_deltas): one upsert a year, department and job, in sorted
    -- order so concurrent batches never deadlock on them.
    select format($sql$
        insert into hire_counts as c (department_id, job_id, hire_year, q1, q2, q3, q4)
        select department_id, job_id, hire_year, q1, q2, q3, q4
        from (%s) as deltas
        where (q1, q2, q3, q4) <> (0, 0, 0, 0)
        order by hire_year, department_id, job_id
        on conflict (hire_year, department_id, job_id) do update
            set q1 = c.q1 + excluded.q1, q2 = c.q2 + excluded.q2,
                q3 = c.q3 + excluded.q3, q4 = c.q4 + excluded.q4, updated_at = now()
    $sql$, _hire_count_deltas(p_changed))
$$;

create or replace function _recount_hires()
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: hire_counts equals a recount of employees, and only the count
-- rows that differed were written (one statement: a changed count is set,
-- a missing one added, one no employee has any more deleted), so a table
-- replaced by the same rows leaves every count row as it was. The caller
-- holds employees against writers (share mode or stronger).
begin
    execute format($sql$
        merge into hire_counts as c
        using (
            select hire_year, department_id, job_id, r.q1, r.q2, r.q3, r.q4
            from (%s) as r
            full join hire_counts as h using (hire_year, department_id, job_id)
        ) as s
        on c.hire_year = s.hire_year and c.department_id = s.department_id
            and c.job_id = s.job_id
        when matched and s.q1 is null then delete
        when matched and (c.q1, c.q2, c.q3, c.q4) is distinct from (s.q1, s.q2, s.q3, s.q4)
            then update set q1 = s.q1, q2 = s.q2, q3 = s.q3, q4 = s.q4, updated_at = now()
        when not matched then
            insert (department_id, job_id, hire_year, q1, q2, q3, q4)
            values (s.department_id, s.job_id, s.hire_year, s.q1, s.q2, s.q3, s.q4)
    $sql$, _hire_count_deltas('select department_id, job_id, hiring_date, 1 as sign from employees'));
end;
$$;

create or replace function _hire_counts_after_change()
returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: after any INSERT, UPDATE or DELETE statement on employees,
-- hire_counts has been adjusted by exactly the rows it changed. Only the
-- transition tables of the operation exist, hence the dynamic source.
begin
    execute _hire_counts_upsert(case tg_op
        when 'INSERT' then 'select department_id, job_id, hiring_date, 1 as sign from new_rows'
        when 'DELETE' then 'select department_id, job_id, hiring_date, -1 as sign from old_rows'
        else 'select department_id, job_id, hiring_date, 1 as sign from new_rows'
            || ' union all select department_id, job_id, hiring_date, -1 from old_rows'
    end);
    return null;
end;
$$;

create or replace function _counts_hires(p_table regclass)
returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- true when an insert into p_table is counted in hire_counts by the
    -- trigger below (so _insert_counting_hires and _replace_counting_hires
    -- apply): employees, on plain PostgreSQL; on Citus hire_counts is a
    -- view and no table has it
    select exists (
        select from pg_trigger as t
        where t.tgrelid = p_table and t.tgfoid = '_hire_counts_after_change'::regproc
            and t.tgtype & 4 <> 0  -- TRIGGER_TYPE_INSERT
    )
$$;

create or replace function _insert_counting_hires(p_insert text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: runs p_insert, which inserts the valid rows of
-- pg_temp.judged_rows into employees, and adds exactly those rows to
-- hire_counts by one aggregate over them, with the insert trigger off for
-- that statement: the trigger would first copy every inserted row into its
-- transition table (1.4 s of a million rows, against 0.7). Only for a
-- transaction that holds employees exclusively (an initial load), so no
-- other session ever sees the trigger off.
begin
    alter table employees disable trigger employees_hire_counts_insert;
    execute p_insert;
    execute _hire_counts_upsert(
        'select department_id, job_id, hiring_date, 1 as sign'
        ' from pg_temp.judged_rows where reason_code is null'
    );
    alter table employees enable always trigger employees_hire_counts_insert;
end;
$$;

create or replace function _replace_counting_hires(p_statements text[])
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: runs p_statements, which replace every row of employees (a
-- truncate, then an insert), with the count triggers off, then recounts
-- the hires writing only the counts that changed (_recount_hires): the
-- triggers would delete every count row and add it again, and after three
-- restores hire_counts held three dead rows a live one and KPI 2 took 3.3
-- ms instead of 0.8 until a vacuum. Only for a transaction that holds
-- employees exclusively (a restore), so no other session sees the
-- triggers off.
declare
    v_statement text;
begin
    alter table employees disable trigger employees_hire_counts_truncate;
    alter table employees disable trigger employees_hire_counts_insert;
    foreach v_statement in array p_statements loop
        execute v_statement;
    end loop;
    alter table employees enable always trigger employees_hire_counts_truncate;
    alter table employees enable always trigger employees_hire_counts_insert;
    perform _recount_hires();
end;
$$;

create or replace function _hire_counts_after_truncate()
returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: after TRUNCATE employees, hire_counts is empty too.
begin
    delete from hire_counts;
    return null;
end;
$$;

create or replace function refresh_hire_counts()
returns bigint
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: makes hire_counts equal a recount of employees (for an install
-- onto an existing table, or a repair), writing only the counts that
-- differ; returns the number of count rows. On Citus hire_counts is a
-- view, always current: it only counts them.
begin
    if not _hire_counts_is_table() then
        return (select count(*) from hire_counts);
    end if;
    lock table employees in share mode;
    perform _recount_hires();
    return (select count(*) from hire_counts);
end;
$$;

-- Only while hire_counts is a table, and never with Citus: there
-- hire_counts is a view and employees takes no triggers (the install
-- distributes the tables after this file: procedures/005_engine.sql); a
-- migration that remakes the table there leaves the view to that step.
do $$
begin
    if not _hire_counts_is_table() or _citus_installed() then
        return;
    end if;
    drop trigger if exists employees_hire_counts_insert on employees;
    create trigger employees_hire_counts_insert
    after insert on employees
    referencing new table as new_rows
    for each statement execute function _hire_counts_after_change();

    drop trigger if exists employees_hire_counts_update on employees;
    create trigger employees_hire_counts_update
    after update on employees
    referencing old table as old_rows new table as new_rows
    for each statement execute function _hire_counts_after_change();

    drop trigger if exists employees_hire_counts_delete on employees;
    create trigger employees_hire_counts_delete
    after delete on employees
    referencing old table as old_rows
    for each statement execute function _hire_counts_after_change();

    drop trigger if exists employees_hire_counts_truncate on employees;
    create trigger employees_hire_counts_truncate
    after truncate on employees
    for each statement execute function _hire_counts_after_truncate();

    -- ALWAYS: they must fire in replica mode too, in which _insert_valid_rows may
    -- insert (only then: _skips_row_triggers checks that every trigger of
    -- employees is ALWAYS, so a new trigger is never skipped silently).
    alter table employees enable always trigger employees_hire_counts_insert;
    alter table employees enable always trigger employees_hire_counts_update;
    alter table employees enable always trigger employees_hire_counts_delete;
    alter table employees enable always trigger employees_hire_counts_truncate;

    -- First install onto a table that already has rows: count them once.
    if not exists (select from hire_counts) and exists (select from employees) then
        perform refresh_hire_counts();
    end if;
end
$$;

revoke all on function refresh_hire_counts() from public;
revoke all on function _insert_counting_hires(text) from public;
revoke all on function _counts_hires(regclass) from public;
revoke all on function _recount_hires() from public;
revoke all on function _replace_counting_hires(text[]) from public;
