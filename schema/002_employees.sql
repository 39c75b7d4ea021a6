-- Hired employees. The foreign keys are DEFERRABLE (initially immediate) so a
-- restore can replace departments or jobs inside one transaction and have the
-- references checked at commit.

create table if not exists employees (
    employee_id integer not null,
    employee_name text not null,
    hiring_date timestamptz not null,
    department_id integer not null,
    job_id integer not null,
    constraint employees_pkey primary key (employee_id),
    constraint employees_id_positive check (employee_id > 0),
    constraint employees_name_not_blank check (employee_name <> ''),
    constraint employees_name_trimmed
    check (employee_name = btrim(employee_name, E' \t\r\n')),
    constraint employees_name_max_length
    check (char_length(employee_name) <= 200),
    constraint employees_department_id_fkey foreign key (department_id)
    references departments (department_id) deferrable initially immediate,
    constraint employees_job_id_fkey foreign key (job_id)
    references jobs (job_id) deferrable initially immediate
);

-- The foreign keys' lookups from the parent side (deleting a department)
-- and the KPI queries both want these.
create index if not exists employees_department_id_idx on employees (department_id);
create index if not exists employees_job_id_idx on employees (job_id);
