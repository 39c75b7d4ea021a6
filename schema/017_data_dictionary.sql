-- The data dictionary as data: which tables the HR data has, the order they
-- load in, the names their CSV files go by, and each column's place in a
-- CSV line and the field rule that judges it (procedures/010). What the
-- catalogue already knows (types, NOT NULL, the named constraints, the
-- references) is read from the catalogue by data_dictionary(), never
-- written here a second time. The code that must stay fast is generated
-- from these rows at install (procedures/001_dictionary.sql), so a new
-- column or table is a migration that alters the table and adds its rows
-- here (README, "Adding a column").

create table if not exists dictionary_tables (
    table_name text not null,
    load_order integer not null,  -- referenced tables first
    file_names text[] not null,  -- what its CSV file is called, the first the usual name
    constraint dictionary_tables_pkey primary key (table_name),
    constraint dictionary_tables_load_order_key unique (load_order),
    constraint dictionary_tables_has_file_name check (cardinality(file_names) > 0)
);

create table if not exists dictionary_columns (
    table_name text not null,
    column_name text not null,
    csv_position integer not null,  -- 1-based; the id first, the name second
    rule text not null,  -- procedures/010: _id_problem, _name_problem, _datetime_problem
    constraint dictionary_columns_pkey primary key (table_name, column_name),
    constraint dictionary_columns_position_key unique (table_name, csv_position),
    constraint dictionary_columns_table_fkey foreign key (table_name)
    references dictionary_tables (table_name),
    constraint dictionary_columns_rule_known check (rule in ('id', 'name', 'datetime')),
    constraint dictionary_columns_position_positive check (csv_position > 0)
);

insert into dictionary_tables (table_name, load_order, file_names) values
('departments', 1, array['departments.csv']),
('jobs', 2, array['jobs.csv']),
('employees', 3, array['hired_employees.csv', 'employees.csv'])
on conflict do nothing;

insert into dictionary_columns (table_name, column_name, csv_position, rule) values
('departments', 'department_id', 1, 'id'),
('departments', 'department_name', 2, 'name'),
('jobs', 'job_id', 1, 'id'),
('jobs', 'job_name', 2, 'name'),
('employees', 'employee_id', 1, 'id'),
('employees', 'employee_name', 2, 'name'),
('employees', 'hiring_date', 3, 'datetime'),
('employees', 'department_id', 4, 'id'),
('employees', 'job_id', 5, 'id')
on conflict do nothing;

grant select on dictionary_tables, dictionary_columns to dataarch_api;
