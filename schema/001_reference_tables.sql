-- The two reference tables of the HR data dictionary.
-- Names are stored trimmed (the ingest path trims them) and never blank.
-- The whitespace set E' \t\r\n' is the one the ingest path trims with.

create table if not exists departments (
    department_id integer not null,
    department_name text not null,
    constraint departments_pkey primary key (department_id),
    constraint departments_id_positive check (department_id > 0),
    constraint departments_name_not_blank check (department_name <> ''),
    constraint departments_name_trimmed
    check (department_name = btrim(department_name, E' \t\r\n')),
    constraint departments_name_max_length
    check (char_length(department_name) <= 200)
);

create table if not exists jobs (
    job_id integer not null,
    job_name text not null,
    constraint jobs_pkey primary key (job_id),
    constraint jobs_id_positive check (job_id > 0),
    constraint jobs_name_not_blank check (job_name <> ''),
    constraint jobs_name_trimmed check (job_name = btrim(job_name, E' \t\r\n')),
    constraint jobs_name_max_length check (char_length(job_name) <= 200)
);
