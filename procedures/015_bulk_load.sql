-- Bulk loads (CSV migration, restore) check references once per load instead
-- of once per row: inside the load's transaction the table's foreign keys
-- are dropped and re-added, which PostgreSQL validates with one anti-join.
-- Every FK trigger lookup costs ~11 us a row; the re-validation a fraction.
-- The definitions come from pg_constraint, so schema/ stays the one source.

create or replace function _suspend_foreign_keys(p_table regclass)
returns jsonb
language plpgsql
set search_path = pg_catalog, public
as $$
-- Promise: locks every table p_table references in SHARE mode (no row can
-- be deleted or changed there until commit), drops p_table's foreign keys,
-- and returns their definitions for _reinstate_foreign_keys. Only useful
-- inside a transaction that ends by reinstating them, or rolls back.
declare
    v_keys jsonb;
    v_key record;
begin
    select coalesce(jsonb_agg(jsonb_build_array(
        c.conname, pg_get_constraintdef(c.oid), c.confrelid::regclass::text
    ) order by c.conname), '[]'::jsonb)
    into v_keys
    from pg_constraint as c
    where c.conrelid = p_table and c.contype = 'f';
    for v_key in select k from jsonb_array_elements(v_keys) as k loop
        execute format('lock table %s in share mode', v_key.k ->> 2);
        execute format('alter table %s drop constraint %I', p_table, v_key.k ->> 0);
    end loop;
    return v_keys;
end;
$$;

create or replace function _reinstate_foreign_keys(p_table regclass, p_keys jsonb)
returns void
language plpgsql
set search_path = pg_catalog, public
as $$
-- Promise: re-creates the foreign keys _suspend_foreign_keys dropped, each
-- validated against every row (a violation raises 23503 and the caller's
-- transaction rolls back).
declare
    v_key record;
begin
    for v_key in select k from jsonb_array_elements(p_keys) as k loop
        execute format(
            'alter table %s add constraint %I %s', p_table, v_key.k ->> 0, v_key.k ->> 1
        );
    end loop;
end;
$$;

revoke all on function _suspend_foreign_keys(regclass) from public;
revoke all on function _reinstate_foreign_keys(regclass, jsonb) from public;
