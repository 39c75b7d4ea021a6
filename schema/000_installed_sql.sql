-- Which SQL files the installer applied, by content. The hash of this table
-- is the database's schema version (backups record it).

create table if not exists installed_sql (
    file_name text not null,
    sha256 text not null,
    installed_at timestamptz not null default now(),
    constraint installed_sql_pkey primary key (file_name)
);
