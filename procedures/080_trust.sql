-- The API role's privileges, documented once (api_role_allowed) and compared
-- with the catalogue (api_role_audit): `dataarch db check` reports the
-- difference, tests/test_trust_boundaries.py fails on it, and the README's
-- trust table is checked against api_role_allowed. A new grant to
-- dataarch_api, or a new SECURITY DEFINER function it may execute, must be
-- added here, with its reason, or the tests fail.

create or replace function api_role_allowed()
returns table (kind text, object text, privilege text, why text)
language sql immutable
set search_path = pg_catalog, public, pg_temp
as $$
    select * from (values
        ('attribute', 'dataarch_api', 'login', 'the HTTP service logs in as it'),
        ('database', current_database(), 'connect', 'the HTTP service logs in as it'),
        ('schema', 'public', 'usage', 'to name the tables and functions below'),
        ('table', 'dictionary_tables', 'select', 'GET /dictionary, the API''s row schemas'),
        ('table', 'dictionary_columns', 'select', 'GET /dictionary, the API''s row schemas'),
        ('table', 'hire_counts', 'select', 'the KPIs'),
        ('table', 'hires_by_quarter', 'select', 'KPI 1'),
        ('table', 'department_hires', 'select', 'KPI 2'),
        ('table', 'departments_above_mean', 'select', 'KPI 2'),
        ('table', 'reason_codes', 'select', 'rejection messages'),
        ('table', 'ingest_batches', 'select', 'batches and their rejections'),
        ('table', 'ingest_errors', 'select', 'GET /tables/{table}/rejections'),
        ('table', 'installed_sql', 'select', 'the schema version a backup records'),
        ('table', 'backup_catalog', 'select', 'which states a backup recorded'),
        ('table', 'migrated_files', 'select', 'a full backup set reads the ingest log'),
        ('table', 'idempotency_keys', 'select', 'a full backup set reads the ingest log'),
        ('table', 'backup_sets', 'select', 'which sets the backups belong to'),
        (
            'function', 'ingest_batch(text,jsonb,text,text,text)', 'execute',
            'POST /tables/{table}/rows'
        ),
        ('function', 'ingest_batch(jsonb)', 'execute', 'the psql form of ingest_batch'),
        (
            'function', 'ingest_batch_json(text,text,text,text,text,text)', 'execute',
            'POST /tables/{table}/rows with the body as received'
        ),
        ('function', 'ready_to_ingest()', 'execute', 'GET /health/ready'),
        ('function', 'csv_begin(text)', 'execute', 'POST /tables/{table}/csv'),
        (
            'function', 'judge_csv_lines(text,text,integer[])', 'execute',
            'POST /tables/{table}/csv'
        ),
        (
            'function', 'ingest_csv_lines(text,text,text,text,bigint,boolean)', 'execute',
            'POST /tables/{table}/csv'
        ),
        ('function', 'close_rejections(bigint[],text,text)', 'execute', 'POST /rejections/close'),
        ('function', 'backup_set_begin(text,text[],bigint)', 'execute', 'POST /backups'),
        ('function', 'backup_record(text,text,text)', 'execute', 'POST /backups'),
        ('function', 'restore_begin(text)', 'execute', 'POST /tables/{table}/restore'),
        (
            'function', 'restore_finish(text,bigint,text,text,jsonb,boolean)', 'execute',
            'POST /tables/{table}/restore, only to a state a backup recorded'
        ),
        (
            'function', 'lock_holders(regclass,bigint)', 'execute',
            'a 409 or 503 says who holds a busy table'
        ),
        ('function', 'revert_batch(bigint,boolean)', 'execute', 'POST /batches/{id}/revert'),
        ('function', 'api_token_scope(text)', 'execute', 'bearer tokens `dataarch token` issued'),
        ('function', 'api_session_open(text,text,integer)', 'execute', 'POST /login'),
        ('function', 'api_session_valid(text)', 'execute', 'the reports, signed in'),
        ('function', 'api_session_close(text)', 'execute', 'POST /logout')
    ) as allowed (kind, object, privilege, why)
    union all
    -- every table of the data dictionary (secure_database grants it)
    select 'table', t, 'select', format('GET /tables/%s/rows/{id}, backups, the KPIs', t)
    from unnest(_data_tables()) as t
$$;

create or replace function api_role_privileges()
returns table (kind text, object text, privilege text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: what dataarch_api may do here, from the catalogue, directly or
-- through PUBLIC or a role it belongs to: role attributes, memberships,
-- the database's privileges, CREATE in any schema and USAGE on public,
-- every privilege on a relation of public, and EXECUTE on the SECURITY
-- DEFINER functions of public (other functions run with the caller's own
-- rights, so they grant nothing).
declare
    v_role constant text := 'dataarch_api';
begin
    return query
    select 'attribute', r.rolname::text, a.attribute
    from pg_roles as r
    cross join lateral (values
        ('login', r.rolcanlogin), ('superuser', r.rolsuper), ('createrole', r.rolcreaterole),
        ('createdb', r.rolcreatedb), ('replication', r.rolreplication),
        ('bypassrls', r.rolbypassrls)
    ) as a (attribute, granted)
    where r.rolname = v_role and a.granted
    union all
    select 'member of', g.rolname::text, 'membership'
    from pg_auth_members as m
    join pg_roles as g on g.oid = m.roleid
    join pg_roles as r on r.oid = m.member
    where r.rolname = v_role
    union all
    select 'database', current_database()::text, p.privilege
    from unnest(array['connect', 'temporary', 'create']) as p (privilege)
    where has_database_privilege(v_role, current_database(), p.privilege)
    union all
    select 'schema', n.nspname::text, p.privilege
    from pg_namespace as n
    cross join unnest(array['usage', 'create']) as p (privilege)
    where (p.privilege = 'create' or n.nspname = 'public')
        and has_schema_privilege(v_role, n.oid, p.privilege)
    union all
    select 'table', c.relname::text, p.privilege
    from pg_class as c
    cross join unnest(array[
        'select', 'insert', 'update', 'delete', 'truncate', 'references', 'trigger'
    ]) as p (privilege)
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
        and (
            has_table_privilege(v_role, c.oid, p.privilege)
            or p.privilege in ('select', 'insert', 'update', 'references')
            and has_any_column_privilege(v_role, c.oid, p.privilege)
        )
    union all
    select 'sequence', c.relname::text, p.privilege
    from pg_class as c
    cross join unnest(array['usage', 'select', 'update']) as p (privilege)
    where c.relnamespace = 'public'::regnamespace and c.relkind = 'S'
        and has_sequence_privilege(v_role, c.oid, p.privilege)
    union all
    select 'function', f.oid::regprocedure::text, 'execute'
    from pg_proc as f
    where f.pronamespace = 'public'::regnamespace and f.prosecdef
        and has_function_privilege(v_role, f.oid, 'execute');
end;
$$;

create or replace function api_role_audit()
returns table (finding text, kind text, object text, privilege text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every privilege dataarch_api holds that api_role_allowed does not
-- document ('excess': a door to close), and every documented one it lacks
-- ('missing': a route that will fail). None on a database as installed.
begin
    return query
    select 'excess', x.kind, x.object, x.privilege from (
        select p.kind, p.object, p.privilege from api_role_privileges() as p
        except
        select a.kind, a.object, a.privilege from api_role_allowed() as a
    ) as x
    union all
    select 'missing', y.kind, y.object, y.privilege from (
        select a.kind, a.object, a.privilege from api_role_allowed() as a
        where a.kind <> 'table' or to_regclass(a.object) is not null
        except
        select p.kind, p.object, p.privilege from api_role_privileges() as p
    ) as y
    order by 1, 2, 3, 4;
end;
$$;

create or replace function secure_database()
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: in this database only the installing role (the owner of the
-- SECURITY DEFINER functions) may create temporary objects, and nobody but
-- it may create objects in public. The definer functions stage rows in
-- session-temporary tables they find by name; a caller that could create
-- temporary objects could plant its own under those names first and have
-- the owner run its code (procedures/002_session_staging.sql has the second
-- wall). PostgreSQL lets PUBLIC create temporary objects in every database
-- by default, and a database made from a template does not inherit its
-- privileges: the installer calls this on every install. Grant TEMPORARY to
-- anyone else who needs it by name, never to dataarch_api. A role that may
-- not revoke it (not the database's owner) leaves it as it was; `dataarch
-- db check` then reports it. The API role reads every table of the data
-- dictionary, a table a migration adds included: granted only where it
-- is missing, since a GRANT rewrites the table's catalogue row and one
-- beside a restore's ALTER TABLE fails ("tuple concurrently updated"); a
-- new table is granted in the transaction that creates it, unseen by all.
declare
    v_table text;
begin
    foreach v_table in array _data_tables() loop
        if not has_table_privilege('dataarch_api', v_table, 'select') then
            execute format('grant select on %I to dataarch_api', v_table);
        end if;
    end loop;
    execute format('grant temporary on database %I to %I', current_database(), current_user);
    execute format('revoke temporary on database %I from public', current_database());
    execute format('revoke temporary on database %I from dataarch_api', current_database());
    revoke create on schema public from public;
    revoke create on schema public from dataarch_api;
end;
$$;

revoke all on function secure_database() from public;
