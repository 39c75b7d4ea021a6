-- Lineage: every row of the HR tables records the batch that wrote it
-- (batch_id) and where in that batch it was (batch_position: its index in
-- an API batch, or the first line of its record in a CSV file), so that
-- `dataarch lineage` can say where a row came from and `dataarch batches
-- revert` can take out exactly the rows of one load. Rows of earlier
-- releases have neither: nobody recorded it. No foreign key into
-- ingest_batches: it would be a per-row check on every insert, and on Citus
-- the log stays on the coordinator. A BRIN index finds a batch's rows (they
-- arrive together, so they sit together) at almost no cost to inserts.

alter table departments add column batch_id bigint, add column batch_position bigint;
alter table jobs add column batch_id bigint, add column batch_position bigint;
alter table employees add column batch_id bigint, add column batch_position bigint;
create index employees_batch_id_idx on employees using brin (batch_id);

-- A batch may now be a restore (source 'restore:FILE': it replaced the
-- table) or a revert (source 'revert': it removed the rows of `reverts`).
-- `removed` counts the rows a batch took out; `reverted_by` marks a batch
-- whose rows a revert took out; request_id is the HTTP request's.
alter table ingest_batches
add column lineage boolean,  -- its rows record it; NULL: a batch of an earlier release
add column removed bigint not null default 0,
add column reverts bigint,
add column reverted_by bigint,
add column request_id text,
add constraint ingest_batches_reverts_fkey foreign key (reverts)
references ingest_batches (batch_id),
add constraint ingest_batches_reverted_by_fkey foreign key (reverted_by)
references ingest_batches (batch_id),
add constraint ingest_batches_revert_names_its_batch
check ((source = 'revert') = (reverts is not null));
alter table ingest_batches alter column lineage set default true;
alter table ingest_batches drop constraint ingest_batches_source_known;
alter table ingest_batches add constraint ingest_batches_source_known
check (
    source in ('api', 'psql', 'retry', 'revert')
    or source like 'csv:_%' or source like 'restore:_%'
);

-- Backup sets, numbered in the order they were made: "newest" is the
-- highest number, whatever a clock said. A set holds every table a backup
-- holds (full) or some of them (partial); `dataarch restore --all` takes the
-- newest full one. backup_catalog's rows name their set.
create table if not exists backup_sets (
    set_number bigint generated always as identity,
    set_name text not null,
    kind text not null,
    tables text[] not null,
    started_at timestamptz not null default clock_timestamp(),
    recorded_by text not null default session_user,
    constraint backup_sets_pkey primary key (set_number),
    constraint backup_sets_set_name_key unique (set_name),
    constraint backup_sets_kind_known check (kind in ('full', 'partial'))
);

revoke all on backup_sets from public;
grant select on backup_sets to dataarch_api;

-- the signatures that change: a batch's id and position reach the insert,
-- and a restore says which file it loads and whether it is a dry run
drop function if exists _insert_judged(text, boolean);
drop function if exists _insert_rows(text, boolean);
drop function if exists _restore_tables(jsonb);
drop function if exists restore_finish(text, bigint, text);
drop function if exists relation_checksum(regclass);
drop function if exists _keyed_checksums(regclass);
drop function if exists ingest_batch_json(text, text, text, text, text);
drop function if exists ingest_batch(text, jsonb, text, text);
drop function if exists _ingest_rows(text, jsonb, boolean);
