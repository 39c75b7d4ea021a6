-- The KPIs' source: hire counts of one year. On one server they are read
-- from the hire_counts table; on Citus, where hire_counts is a view over
-- employees (procedures/005_engine.sql), the year's employees are counted
-- by one aggregate the shards compute side by side. Through that view, a
-- year's KPI had Citus count every year on the coordinator first (a
-- recursively planned subquery: ~330 ms at 96 000 employees, against ~35
-- ms for the one aggregate, 4 shards, 2026-12-03).

-- The two functions below read a year of hire_counts through its primary
-- key (hire_year first). hire_counts is a few MB that every KPI reads, so
-- it is in memory and an index page costs what a page read in order does:
-- random_page_cost = 1.1 says so. At the default 4 the planner scanned
-- every year for one: KPI 2 took 2.4 ms at 965 000 employees against 1.6
-- through the index (1.2 against 0.9 at 10 000), KPI 1 10.0 against 9.7
-- (p50 of 55 calls each, 2026-12-04, when hire_counts kept a row a
-- quarter). At a row a pair (schema/019) a table of only two years is
-- scanned whole (half of it is the year; no slower, measured); from four
-- years on, the year is read through the index (tests/test_kpis.py).

create or replace function hire_years()
returns table (hire_year integer)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every year from the first hire's to the last's (UTC), those
-- between without a hire too (they have no rows in job_hires_in_year). Two
-- ends of an index on one server; two aggregates the shards answer on Citus.
declare
    v_first integer;
    v_last integer;
begin
    if _hire_counts_is_table() then
        select min(c.hire_year), max(c.hire_year) into v_first, v_last from hire_counts as c;
    else
        select
            extract(year from min(e.hiring_date) at time zone 'UTC')::integer,
            extract(year from max(e.hiring_date) at time zone 'UTC')::integer
        into v_first, v_last
        from employees as e;
    end if;
    return query select generate_series(v_first, v_last);
end;
$$;

create or replace function job_hires_in_year(p_year integer)
returns table (
    department_id integer, job_id integer, q1 numeric, q2 numeric, q3 numeric, q4 numeric
)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set random_page_cost = 1.1  -- see above hire_years()
as $$
-- Promise: the hires of year p_year (UTC) per department and job, by
-- quarter (0 for a quarter without), for each pair with hires; none for a
-- year no hiring date can have (outside 1-9999). A row a pair, as
-- hire_counts keeps them, so KPI 1 joins names once a pair (8.9 ms at a
-- million employees, against 14.2 joining a count a quarter first).
begin
    if p_year not between 1 and 9999 then
        return;  -- and make_timestamptz would refuse year 0
    end if;
    if _hire_counts_is_table() then
        return query
        select c.department_id, c.job_id, c.q1::numeric, c.q2::numeric, c.q3::numeric, c.q4::numeric
        from hire_counts as c
        where c.hire_year = p_year and c.hires > 0;
    else
        return query
        select
            e.department_id,
            e.job_id,
            count(*) filter (where h.quarter = 1)::numeric,
            count(*) filter (where h.quarter = 2)::numeric,
            count(*) filter (where h.quarter = 3)::numeric,
            count(*) filter (where h.quarter = 4)::numeric
        from employees as e
        cross join lateral (
            select extract(quarter from e.hiring_date at time zone 'UTC') as quarter
        ) as h
        where
            e.hiring_date >= make_timestamptz(p_year, 1, 1, 0, 0, 0, 'UTC')
            and e.hiring_date < make_timestamptz(p_year + 1, 1, 1, 0, 0, 0, 'UTC')
        group by e.department_id, e.job_id;
    end if;
end;
$$;

create or replace function department_hires_in_year(p_year integer)
returns table (department_id integer, hires bigint)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set random_page_cost = 1.1  -- see above hire_years()
as $$
-- Promise: the hires of year p_year (UTC) per department, those with hires:
-- job_hires_in_year summed by department, computed apart so KPI 2 is
-- handed a dozen rows, not every pair. None for a year outside 1-9999.
begin
    if p_year not between 1 and 9999 then
        return;
    end if;
    if _hire_counts_is_table() then
        return query
        select c.department_id, sum(c.hires)::bigint
        from hire_counts as c  -- a row a job: the year's total in hires
        where c.hire_year = p_year
        group by c.department_id
        having sum(c.hires) > 0;
    else
        return query
        select e.department_id, count(*)
        from employees as e
        where
            e.hiring_date >= make_timestamptz(p_year, 1, 1, 0, 0, 0, 'UTC')
            and e.hiring_date < make_timestamptz(p_year + 1, 1, 1, 0, 0, 0, 'UTC')
        group by e.department_id;
    end if;
end;
$$;

grant execute on function
hire_years(), job_hires_in_year(integer), department_hires_in_year(integer)
to dataarch_api;
