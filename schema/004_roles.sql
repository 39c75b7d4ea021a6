-- dataarch_api: the role the HTTP service logs in as. It may read and call
-- the SECURITY DEFINER functions granted to it; it may not write any table.
-- Roles are cluster-wide, so creation is guarded.

do $$
begin
    if not exists (select from pg_roles where rolname = 'dataarch_api') then
        create role dataarch_api login;
    end if;
end
$$;

revoke all on all tables in schema public from dataarch_api;
grant usage on schema public to dataarch_api;
grant select on departments, jobs, employees, reason_codes, ingest_batches,
ingest_errors, installed_sql to dataarch_api;
