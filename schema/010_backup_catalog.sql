-- Every table state a backup recorded. restore_finish (the function the
-- least-privilege API role may call) replaces a table only with a state
-- listed here, so that role cannot stage rows of its own and make them a
-- table's content. Only the backup functions write it.

create table if not exists backup_catalog (
    backup_id bigint generated always as identity,
    set_name text not null,
    table_name text not null,
    file_name text not null,
    row_count bigint not null,
    checksum text not null,  -- as the file's header records it
    keyed_checksum text not null,  -- the same rows under backup_key's seed
    recorded_at timestamptz not null default now(),
    recorded_by text not null default session_user,
    constraint backup_catalog_pkey primary key (backup_id)
);

create index if not exists backup_catalog_state_idx
on backup_catalog (table_name, row_count, keyed_checksum);

-- The seed of the keyed checksum: without it nobody can compute which rows
-- would match a recorded state, so a staged table cannot be forged to
-- match one (the public checksum is a sum of 64-bit hashes, which can).
-- Nothing is granted on it.
create table if not exists backup_key (
    singleton boolean not null default true,
    seed bigint not null,
    constraint backup_key_pkey primary key (singleton),
    constraint backup_key_singleton check (singleton)
);

insert into backup_key (seed)
select ('x' || left(replace(gen_random_uuid()::text, '-', ''), 16))::bit(64)::bigint
on conflict (singleton) do nothing;

revoke all on backup_catalog, backup_key from public;
grant select on backup_catalog to dataarch_api;
-- a full set written through the API (POST /backups) reads the whole ingest log
grant select on migrated_files, idempotency_keys to dataarch_api;

-- restore_finish now reports what it changed (jsonb) instead of a count.
drop function if exists restore_finish(text, bigint, text);
