-- KPI 1 rows carry department_id and job_id beside the names, so that two
-- departments (or jobs) of one name can be told apart: a new return type.

drop function if exists kpi_hires_by_quarter(integer);
