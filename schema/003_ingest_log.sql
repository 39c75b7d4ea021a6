-- The ingest log: every batch, every rejected row, and the vocabulary of
-- rejection reasons. Nothing here is ever deleted by the application.

create table if not exists reason_codes (
    reason_code text not null,
    sqlstate char(5) not null,
    description text not null,
    constraint reason_codes_pkey primary key (reason_code)
);

-- The descriptions complete a sentence that starts with the field's name.
insert into reason_codes (reason_code, sqlstate, description) values
('missing_field', '23502', 'is missing; every field is mandatory'),
('null_value', '23502', 'is null; every field is mandatory'),
('invalid_type', '22P02', 'has the wrong type'),
('out_of_range', '22003', 'must be an integer from 1 to 2147483647'),
('blank_string', '23514', 'must not be blank'),
(
    'invalid_character', '22021',
    'contains a NUL character (\u0000), which PostgreSQL text cannot hold'
),
('too_long', '23514', 'must be at most 200 characters'),
(
    'invalid_datetime', '22007',
    'must be an ISO 8601 date-time with a time zone, e.g. 2021-07-27T16:02:08Z'
),
('unknown_department', '23503', 'names a department that does not exist'),
('unknown_job', '23503', 'names a job that does not exist'),
('duplicate_in_batch', '23505', 'repeats an id given earlier in the same batch'),
('duplicate_id', '23505', 'is already taken by an existing row'),
('unexpected_field', '42703', 'is not a column of this table'),
(
    'malformed_line', '22P04',
    'line does not have the number of comma-separated fields this table needs'
),
(
    'atomic_batch_rejected', '25000',
    'row is valid, but the atomic batch was rejected because another row is not'
)
on conflict (reason_code) do update
    set sqlstate = excluded.sqlstate, description = excluded.description;

create table if not exists ingest_batches (
    batch_id bigint generated always as identity,
    table_name text not null,
    source text not null,
    mode text not null default 'per_row',
    submitted integer not null default 0,
    inserted integer not null default 0,
    rejected integer not null default 0,
    started_at timestamptz not null default clock_timestamp(),
    finished_at timestamptz,
    constraint ingest_batches_pkey primary key (batch_id),
    constraint ingest_batches_table_name_known
    check (table_name in ('departments', 'jobs', 'employees')),
    constraint ingest_batches_source_known
    check (source in ('api', 'psql') or source like 'csv:_%'),
    constraint ingest_batches_mode_known check (mode in ('per_row', 'atomic')),
    -- the invariant, enforced: a finished batch accounts for every row
    constraint ingest_batches_counts_add_up
    check (finished_at is null or inserted + rejected = submitted)
);

create table if not exists ingest_errors (
    error_id bigint generated always as identity,
    batch_id bigint not null,
    table_name text not null,
    row_index integer,
    source_file text,
    line_number bigint,
    raw_row jsonb,
    raw_line text,
    reason_code text not null,
    field text,
    message text not null,
    constraint_name text,
    sqlstate char(5),
    source text not null,
    received_at timestamptz not null default now(),
    constraint ingest_errors_pkey primary key (error_id),
    constraint ingest_errors_batch_id_fkey foreign key (batch_id)
    references ingest_batches (batch_id),
    constraint ingest_errors_reason_code_fkey foreign key (reason_code)
    references reason_codes (reason_code),
    constraint ingest_errors_has_origin check (num_nonnulls(raw_row, raw_line) = 1),
    constraint ingest_errors_has_position check (num_nonnulls(row_index, line_number) >= 1)
);

create index if not exists ingest_errors_batch_id_idx on ingest_errors (batch_id);
create index if not exists ingest_errors_table_newest_idx
on ingest_errors (table_name, error_id desc);

-- CSV files already migrated, by content: a second run of the same file is a no-op.
create table if not exists migrated_files (
    table_name text not null,
    sha256 text not null,
    file_name text not null,
    batch_id bigint not null,
    migrated_at timestamptz not null default now(),
    constraint migrated_files_pkey primary key (table_name, sha256),
    constraint migrated_files_batch_id_fkey foreign key (batch_id)
    references ingest_batches (batch_id)
);
