-- Issued API tokens and sign-in sessions (schema/015). The CLI issues,
-- lists and revokes tokens as the owner; the API role may only ask what a
-- secret's hash opens, and open, check and close sessions: it never reads
-- the tables, so it cannot list hashes or revive a revoked token.

create or replace function api_token_issue(p_name text, p_scope text, p_sha256 text)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a new live token named p_name with scope p_scope, known by the
-- SHA-256 p_sha256 of its secret; DAT11 when the name is taken (revoked
-- tokens keep theirs). Returns {name, scope, created_at}.
declare
    v_token api_tokens;
begin
    insert into api_tokens (name, scope, sha256) values (p_name, p_scope, p_sha256)
    on conflict (name) do nothing
    returning * into v_token;
    if v_token.name is null then
        raise exception 'a token named "%" exists already', p_name
            using errcode = 'DAT11',
                hint = 'Choose another name: `dataarch token list` shows them, revoked ones too.';
    end if;
    return jsonb_build_object(
        'name', v_token.name, 'scope', v_token.scope, 'created_at', v_token.created_at
    );
end;
$$;

create or replace function api_token_revoke(p_name text)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the token p_name is refused from now on by every API process
-- (each asks the database), and every session signed in with it is closed;
-- DAT01 when no token has that name. Returns {name, revoked_at, sessions}.
declare
    v_revoked timestamptz;
    v_sessions integer;
begin
    update api_tokens set revoked_at = coalesce(revoked_at, now())
    where name = p_name
    returning revoked_at into v_revoked;
    if v_revoked is null then
        raise exception 'no token named "%"', p_name
            using errcode = 'DAT01', hint = '`dataarch token list` shows them.';
    end if;
    update api_sessions set closed_at = now()
    where token_name = p_name and closed_at is null;
    get diagnostics v_sessions = row_count;
    return jsonb_build_object('name', p_name, 'revoked_at', v_revoked, 'sessions', v_sessions);
end;
$$;

create or replace function api_token_list()
returns table (
    name text, scope text, created_at timestamptz, created_by text, revoked_at timestamptz
)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every issued token, oldest first, without its hash.
begin
    return query
    select t.name, t.scope, t.created_at, t.created_by, t.revoked_at
    from api_tokens as t order by t.created_at, t.name;
end;
$$;

create or replace function api_token_scope(p_sha256 text)
returns text
language plpgsql stable
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the scope of the live (not revoked) issued token whose secret
-- hashes to p_sha256, else NULL. What the API asks for a bearer token it
-- was not configured with.
begin
    return (
        select t.scope from api_tokens as t
        where t.sha256 = p_sha256 and t.revoked_at is null
    );
end;
$$;

create or replace function api_session_open(
    p_sha256 text, p_token_sha256 text, p_seconds integer
)
returns void
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a sign-in session, known by the SHA-256 of its cookie, open for
-- p_seconds (1 to 86400), tied to the issued token whose secret hashes to
-- p_token_sha256 (if it is one) so that revoking the token ends it too.
-- Sessions that ended more than a day ago are forgotten as it goes.
begin
    if p_seconds not between 1 and 86400 then
        raise exception 'a session lasts 1 to 86400 seconds, not %', p_seconds
            using errcode = 'DAT02';
    end if;
    delete from api_sessions as s
    where s.ctid in (
        select x.ctid from api_sessions as x
        where least(x.expires_at, x.closed_at) < now() - interval '1 day'
        limit 100
    );
    insert into api_sessions (sha256, token_name, expires_at)
    values (
        p_sha256,
        (select t.name from api_tokens as t where t.sha256 = p_token_sha256),
        now() + make_interval(secs => p_seconds)
    );
end;
$$;

create or replace function api_session_valid(p_sha256 text)
returns boolean
language plpgsql stable
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true while the session whose cookie hashes to p_sha256 is open:
-- not expired, not signed out, and its token (if issued) not revoked.
begin
    return exists (
        select from api_sessions as s
        where s.sha256 = p_sha256 and s.closed_at is null and s.expires_at > now()
    );
end;
$$;

create or replace function api_session_close(p_sha256 text)
returns void
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the session whose cookie hashes to p_sha256 is closed (signed
-- out): its cookie opens nothing from now on, on any API process.
begin
    update api_sessions set closed_at = now() where sha256 = p_sha256 and closed_at is null;
end;
$$;

revoke all on function api_token_issue(text, text, text) from public;
revoke all on function api_token_revoke(text) from public;
revoke all on function api_token_list() from public;
revoke all on function api_token_scope(text) from public;
revoke all on function api_session_open(text, text, integer) from public;
revoke all on function api_session_valid(text) from public;
revoke all on function api_session_close(text) from public;
grant execute on function api_token_scope(text) to dataarch_api;
grant execute on function api_session_open(text, text, integer) to dataarch_api;
grant execute on function api_session_valid(text) to dataarch_api;
grant execute on function api_session_close(text) to dataarch_api;
