-- Backup and restore support. A backup records table_checksum() of the rows
-- it read; a restore loads the file into a session-private staging table,
-- then restore_finish() replaces the table's rows, re-checks every
-- constraint and compares the checksum before the caller commits. Callers
-- need no write privilege on the tables themselves.
--
-- Raises DAT06 when the restored rows are not the rows that were backed up.

create or replace function table_checksum(p_table text)
returns table (row_count bigint, checksum text)
language plpgsql stable
set search_path = pg_catalog, public
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set extra_float_digits = 3
as $$
-- Promise: the row count and an order-independent 64-bit checksum of the
-- rows' text, stable across sessions (zone and date style are pinned here).
begin
    perform _require_table(p_table);
    return query execute format(
        'select count(*), coalesce(mod(sum(hashtextextended(t::text, 0)::numeric),'
        ' 18446744073709551616)::text, ''0'') from %I as t', p_table
    );
end;
$$;

create or replace function restore_begin(p_table text)
returns text
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: locks p_table against every other reader and writer until the
-- caller's transaction ends, and creates the empty staging table
-- pg_temp.restore_rows (shaped like p_table, dropped at commit) that the
-- caller may COPY into. Returns the staging table's name.
begin
    perform _require_table(p_table);
    execute format('lock table %I in access exclusive mode', p_table);
    drop table if exists pg_temp.restore_rows;
    execute format(
        'create temp table restore_rows (like %I) on commit drop', p_table
    );
    execute format('grant insert on pg_temp.restore_rows to %I', session_user);
    return 'restore_rows';
end;
$$;

create or replace function restore_finish(p_table text, p_rows bigint, p_checksum text)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: replaces every row of p_table with the rows of
-- pg_temp.restore_rows, in the caller's transaction; every constraint is
-- checked, references into and out of p_table once for the whole table; the
-- restored rows must number p_rows and match p_checksum, else DAT06 and
-- nothing changes. Returns the number of rows restored.
declare
    v_found record;
    v_keys jsonb;
    v_indexes jsonb;
begin
    perform _require_table(p_table);
    -- Employees may be restored while departments and jobs stay, and the
    -- reverse: references are checked once for the table, not row by row.
    set constraints all deferred;
    if p_table = 'employees' then
        -- nothing references employees: keys and indexes are rebuilt once
        v_keys := _suspend_foreign_keys('employees');
        v_indexes := _suspend_indexes('employees');
        truncate employees;
        insert into employees select * from pg_temp.restore_rows;
        perform _reinstate(v_indexes);
        perform _reinstate(v_keys);
    else
        execute format('delete from %I', p_table);  -- referenced: no truncate
        execute format('insert into %I select * from pg_temp.restore_rows', p_table);
    end if;
    -- check deferred references now, so a broken one is reported as such
    set constraints all immediate;
    select * into v_found from table_checksum(p_table);
    if v_found.row_count <> p_rows or v_found.checksum <> p_checksum then
        raise exception 'restored % rows with checksum %, but the backup recorded % rows with checksum %',
            v_found.row_count, v_found.checksum, p_rows, p_checksum
            using errcode = 'DAT06',
                hint = 'The backup file does not hold the rows it was made from.';
    end if;
    return v_found.row_count;
end;
$$;

revoke all on function restore_begin(text) from public;
revoke all on function restore_finish(text, bigint, text) from public;
grant execute on function table_checksum(text) to dataarch_api;
grant execute on function restore_begin(text) to dataarch_api;
grant execute on function restore_finish(text, bigint, text) to dataarch_api;
