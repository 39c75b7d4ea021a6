-- Hires per department, job and UTC quarter: what both KPIs read, so that a
-- KPI request costs the same however many employees there are. Kept current
-- by statement-level triggers on employees (procedures/070_hire_counts.sql).
-- No foreign keys: it is derived data, and a department may be restored
-- while its counts stand.

create table if not exists hire_counts (
    department_id integer not null,
    job_id integer not null,
    hire_year integer not null,
    hire_quarter smallint not null,
    hires bigint not null,
    updated_at timestamptz not null default now(),
    constraint hire_counts_pkey
    primary key (hire_year, department_id, job_id, hire_quarter),
    -- No "hires >= 0" check: PostgreSQL checks the proposed row of an upsert
    -- before ON CONFLICT, and the triggers upsert negative deltas.
    constraint hire_counts_quarter_valid check (hire_quarter between 1 and 4)
);

-- Every batch updates ~1000 of these rows in place. Half-empty pages keep
-- the updates HOT (no new index entry), which halved the trigger's time.
alter table hire_counts set (fillfactor = 50);

grant select on hire_counts to dataarch_api;
