-- Tokens issued by `dataarch token create`, and the reports' sign-in
-- sessions, each known by the SHA-256 of its secret only: the database (and
-- every backup of it) never holds a secret that would open the API. A
-- revoked token stays listed, with when it was revoked; its sessions end
-- with it. Only the functions of procedures/085 read or write them.

create table if not exists api_tokens (
    name text not null,
    scope text not null,
    sha256 text not null,
    created_at timestamptz not null default now(),
    created_by text not null default session_user,
    revoked_at timestamptz,
    constraint api_tokens_pkey primary key (name),
    constraint api_tokens_sha256_key unique (sha256),
    constraint api_tokens_scope_known check (scope in ('view', 'read', 'ingest', 'admin')),
    constraint api_tokens_name_sane check (name ~ '^[A-Za-z0-9._:@-]{1,100}$')
);

create table if not exists api_sessions (
    sha256 text not null,
    token_name text,  -- the issued token it signed in with; NULL for a configured one
    opened_at timestamptz not null default now(),
    expires_at timestamptz not null,
    closed_at timestamptz,
    constraint api_sessions_pkey primary key (sha256),
    constraint api_sessions_token_name_fkey foreign key (token_name)
    references api_tokens (name)
);

create index if not exists api_sessions_token_name_idx on api_sessions (token_name);

revoke all on api_tokens, api_sessions from public;
