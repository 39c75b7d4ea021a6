-- A rejection is open until a later batch inserts a row with the same id
-- into the same table (resolved, by that batch), or until someone closes it
-- with a note (closed). record_id is the id the rejected row carried, when
-- it was a usable one; a rejection without one can only be closed.

alter table ingest_errors
add column record_id integer,
add column resolved_by_batch bigint,
add column resolved_at timestamptz,
add column closed_at timestamptz,
add column closed_by text,
add column close_note text,
add constraint ingest_errors_resolved_by_batch_fkey foreign key (resolved_by_batch)
references ingest_batches (batch_id),
add constraint ingest_errors_resolved_or_closed check (resolved_at is null or closed_at is null),
add constraint ingest_errors_resolution_complete
check ((resolved_at is null) = (resolved_by_batch is null)),
add constraint ingest_errors_closure_complete check ((closed_at is null) = (closed_by is null));

-- What the insert path looks up: the open rejections of a table, by id.
create index ingest_errors_open_idx on ingest_errors (table_name, record_id)
where resolved_at is null and closed_at is null;

-- Rejections of earlier releases: the id is the first field of the row as
-- it was received, when that field is a usable id (1 to 2147483647).
update ingest_errors as e
set record_id = ltrim(ids.id, '+0')::integer
from (
    select
        x.error_id,
        btrim(coalesce(
            x.raw_row ->> (
                case x.table_name
                    when 'departments' then 'department_id'
                    when 'jobs' then 'job_id'
                    else 'employee_id'
                end
            ),
            split_part(x.raw_line, ',', 1)
        )) as id
    from ingest_errors as x
) as ids
where
    e.error_id = ids.error_id
    and case
        when ids.id ~ '^[+]?0*[1-9][0-9]{0,9}$'
            then ltrim(ids.id, '+0')::bigint <= 2147483647
        else false
    end;

-- Reasons that depend on other rows, not on the row alone: judged again
-- later (dataarch migrate --retry-rejected), such a row may load.
alter table reason_codes add column depends_on_other_rows boolean not null default false;
update reason_codes
set depends_on_other_rows = true
where reason_code in ('unknown_department', 'unknown_job', 'duplicate_id', 'duplicate_in_batch');

-- A retry of rejected CSV lines (dataarch migrate --retry-rejected) is a
-- batch of its own.
alter table ingest_batches drop constraint ingest_batches_source_known;
alter table ingest_batches add constraint ingest_batches_source_known
check (source in ('api', 'psql', 'retry') or source like 'csv:_%');

-- The core's functions now return each row's record_id (a new return type).
drop function if exists _ingest_rows(text, jsonb, boolean);
drop function if exists _insert_rows(text);
-- table_rejections takes a status and filters.
drop function if exists table_rejections(text, bigint, integer, integer);
