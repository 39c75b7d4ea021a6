-- The session's staging tables (pg_temp.judged_rows, csv_pieces,
-- restore_jobs, ...) are made by SECURITY DEFINER functions, as the owner,
-- and found by name afterwards. A caller who could put something else under
-- one of those names first (a view whose WHERE calls its own function, a
-- table with a trigger) would have the owner run its code. Two walls keep
-- that out: the API role may not create temporary objects at all
-- (schema/015), and every lookup goes through _own_temp_table, which
-- accepts only an ordinary table the current (owning) role made. And every
-- function pins `search_path = pg_catalog, public, pg_temp`: with pg_temp
-- left out, PostgreSQL searches it first, so a temporary `departments`
-- would shadow the real one.

create or replace function _own_temp_table(p_name text)
returns boolean
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: false when the session has no temporary relation named p_name;
-- true when it has one made by the current role (inside a SECURITY DEFINER
-- function: the owner), an ordinary table nobody else could have given a
-- trigger, rule or policy. Anything else under that name is refused
-- (DAT10) before a row of it is read.
declare
    v_found record;
begin
    select c.relkind, c.relowner into v_found
    from pg_class as c
    where c.relnamespace = pg_my_temp_schema() and c.relname = p_name;
    if not found then
        return false;
    end if;
    if v_found.relkind = 'r' and v_found.relowner = (
        select r.oid from pg_roles as r where r.rolname = current_user
    ) then
        return true;
    end if;
    raise exception 'pg_temp.% was not made by dataarch: refusing to use it', p_name
        using errcode = 'DAT10',
            hint = 'Something in this session created a temporary object under a name'
            || ' dataarch stages rows in. Drop it, or use a new session.';
end;
$$;

revoke all on function _own_temp_table(text) from public;
