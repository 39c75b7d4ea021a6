-- hire_counts keeps a row per year, department and job, with a column per
-- quarter: the grain KPI 1 answers at, so a year's KPIs read one row per
-- pair whatever the number of employees (a year of a million employees
-- held 8 784 rows, one a quarter, against 3 800 of 10 000: KPI 1 cost 1.27x
-- and KPI 2 1.81x as much; 1.11x and 1.12x at this grain, SQL p50s,
-- 2026-12-04). `hires` stays, the year's total, for the readers that sum
-- it. The old rows are folded, not recounted: they already equal a recount.
-- Dropping the old table, or on Citus the view, drops the views that read
-- it; the installer applies views/ again after any migration.

do $$
declare
    v_kind "char" := (select c.relkind from pg_class as c where c.oid = 'public.hire_counts'::regclass);
begin
    if v_kind = 'v' then
        -- Citus, where hire_counts is a view over employees: the table made
        -- below is replaced by a view of its shape when the installer
        -- distributes the tables (procedures/005_engine.sql).
        drop view hire_counts cascade;
    else
        lock table hire_counts in access exclusive mode;
        alter table hire_counts rename to hire_counts_by_quarter;
        alter table hire_counts_by_quarter
        rename constraint hire_counts_pkey to hire_counts_by_quarter_pkey;
    end if;
    create table hire_counts (
        department_id integer not null,
        job_id integer not null,
        hire_year integer not null,
        q1 bigint not null default 0,
        q2 bigint not null default 0,
        q3 bigint not null default 0,
        q4 bigint not null default 0,
        hires bigint not null generated always as (q1 + q2 + q3 + q4) stored,
        updated_at timestamptz not null default now(),
        -- No "q1 >= 0" checks: PostgreSQL checks the proposed row of an upsert
        -- before ON CONFLICT, and the triggers upsert negative deltas.
        constraint hire_counts_pkey primary key (hire_year, department_id, job_id)
    );
    -- Every batch updates its rows in place: half-empty pages keep those
    -- updates HOT (no new index entry), as schema/006 found.
    alter table hire_counts set (fillfactor = 50);
    grant select on hire_counts to dataarch_api;
    if v_kind = 'r' then
        insert into hire_counts (department_id, job_id, hire_year, q1, q2, q3, q4, updated_at)
        select
            department_id,
            job_id,
            hire_year,
            coalesce(sum(hires) filter (where hire_quarter = 1), 0),
            coalesce(sum(hires) filter (where hire_quarter = 2), 0),
            coalesce(sum(hires) filter (where hire_quarter = 3), 0),
            coalesce(sum(hires) filter (where hire_quarter = 4), 0),
            max(updated_at)
        from hire_counts_by_quarter
        group by 1, 2, 3;
        drop table hire_counts_by_quarter cascade;
    end if;
end
$$;
