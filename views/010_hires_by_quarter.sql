-- KPI 1: hires per department and job, by UTC quarter, for every year.
-- Reads job_hires_in_year (005), never employees on one server, so its cost
-- does not grow with them.
-- Only (department, job) pairs with at least one hire in the year appear.

create or replace view hires_by_quarter as
select
    y.hire_year as year,
    d.department_id,
    d.department_name as department,
    j.job_id,
    j.job_name as job,
    c.q1,
    c.q2,
    c.q3,
    c.q4
from hire_years() as y
cross join lateral job_hires_in_year(y.hire_year) as c
inner join departments as d on c.department_id = d.department_id
inner join jobs as j on c.job_id = j.job_id;

-- its source before job_hires_in_year (a count a quarter, joined to the names)
drop function if exists hires_in_year(integer);

create or replace function kpi_hires_by_quarter(p_year integer)
returns table (
    department_id integer, department text, job_id integer, job text,
    q1 bigint, q2 bigint, q3 bigint, q4 bigint
)
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: KPI 1 for one year, ordered byte-wise (COLLATE "C") by
-- department, then job, as the published results are; ids break ties
-- between equal names and tell them apart.
begin
    perform _lock_tables_to_read(array['departments', 'jobs']);
    return query
    select
        h.department_id, h.department, h.job_id, h.job,
        h.q1::bigint, h.q2::bigint, h.q3::bigint, h.q4::bigint
    from hires_by_quarter as h
    where h.year = p_year
    order by h.department collate "C", h.job collate "C", h.department_id, h.job_id;
end;
$$;

grant select on hires_by_quarter to dataarch_api;
grant execute on function kpi_hires_by_quarter(integer) to dataarch_api;
