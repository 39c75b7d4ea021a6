-- Idempotency-Key of an HTTP batch: the first request's hash and response.
-- A repeat with the same key and body gets the stored response and changes
-- nothing; the same key with another body is refused. Keys are remembered
-- for 24 hours (ingest_batch_json prunes older ones as it goes).

create table if not exists idempotency_keys (
    idempotency_key text not null,
    request_sha256 text not null,
    batch_id bigint,
    response jsonb,
    created_at timestamptz not null default now(),
    constraint idempotency_keys_pkey primary key (idempotency_key),
    constraint idempotency_keys_key_length
    check (char_length(idempotency_key) between 1 and 200),
    constraint idempotency_keys_batch_id_fkey foreign key (batch_id)
    references ingest_batches (batch_id)
);

create index if not exists idempotency_keys_created_at_idx
on idempotency_keys (created_at);
