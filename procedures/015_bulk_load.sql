-- A restore replaces a whole table in one transaction. Instead of checking
-- each row's references and maintaining each index row by row, it drops the
-- table's foreign keys and indexes inside that transaction and re-creates
-- them after the load: PostgreSQL validates a foreign key with one anti-join
-- and builds an index with one sort (1M employees: 2.9 s with them live,
-- 1.8 s this way). A CSV file larger than the table it loads into does the
-- same with the secondary indexes (1M lines: 1.55 s of index upkeep, 0.67 s
-- to rebuild). The definitions come from the catalog, so schema/ stays the
-- one source.

create or replace function _hold_referenced_tables(p_table regclass)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every table p_table's foreign keys reference is locked in SHARE
-- mode until this transaction ends, through _lock_tables (procedures/003:
-- the one lock order, all or none, a bounded wait that names the holder):
-- no row can be deleted or changed there meanwhile, so references checked
-- after this stay true until commit.
begin
    perform _lock_tables((
        select jsonb_object_agg(c.confrelid::regclass::text, 'share')
        from pg_constraint as c
        where c.conrelid = p_table and c.contype = 'f'
    ));
end;
$$;

create or replace function _suspend_foreign_keys(p_table regclass)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: locks every table p_table references in SHARE mode
-- (_hold_referenced_tables), drops p_table's foreign keys, and returns the
-- statements that re-create them, for _reinstate. Only useful inside a
-- transaction that ends by reinstating them, or rolls back.
declare
    v_key record;
    v_statements jsonb := '[]'::jsonb;
    -- by name: Citus makes a Citus local table a plain one again, under a
    -- new oid, when its last key into a reference table is dropped
    v_table constant text := p_table::text;
begin
    perform _hold_referenced_tables(p_table);
    for v_key in
        select c.conname, pg_get_constraintdef(c.oid) as definition
        from pg_constraint as c
        where c.conrelid = p_table and c.contype = 'f'
        -- the parents in the one lock order (procedures/003)
        order by array_position(_lock_order(), c.confrelid::regclass::text), c.conname
    loop
        execute format('alter table %s drop constraint %I', v_table, v_key.conname);
        v_statements := v_statements || to_jsonb(format(
            'alter table %s add constraint %I %s', v_table, v_key.conname, v_key.definition
        ));
    end loop;
    return v_statements;
end;
$$;

create or replace function _suspend_indexes(
    p_table regclass, p_keep_constraints boolean default false
)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: drops every index of p_table, including those behind its primary
-- key and unique constraints unless p_keep_constraints, and returns the
-- statements that re-create them, for _reinstate. Refuses (DAT07) when
-- another table's foreign key depends on one it would drop. Only useful
-- inside a transaction that ends by reinstating them, or rolls back.
declare
    v_index record;
    v_statements jsonb := '[]'::jsonb;
begin
    if not p_keep_constraints and exists (
        select from pg_constraint as f
        where f.contype = 'f' and f.confrelid = p_table and f.conrelid <> p_table
    ) then
        raise exception 'indexes of % back keys other tables reference', p_table
            using errcode = 'DAT07';
    end if;
    for v_index in
        select i.indexrelid::regclass as index_name, c.conname, c.oid as constraint_oid
        from pg_index as i
        left join pg_constraint as c on c.conindid = i.indexrelid and c.conrelid = p_table
        where i.indrelid = p_table and not (p_keep_constraints and c.oid is not null)
    loop
        if v_index.conname is not null then
            v_statements := v_statements || to_jsonb(format(
                'alter table %s add constraint %I %s',
                p_table, v_index.conname, pg_get_constraintdef(v_index.constraint_oid)
            ));
            execute format('alter table %s drop constraint %I', p_table, v_index.conname);
        else
            v_statements := v_statements || to_jsonb(pg_get_indexdef(v_index.index_name));
            execute format('drop index %s', v_index.index_name);
        end if;
    end loop;
    return v_statements;
end;
$$;

create or replace function _reinstate(p_statements jsonb)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: runs the re-create statements a _suspend_* function returned, in
-- order. A foreign key is validated against every row (23503) and a unique
-- index built over them (23505); either error rolls the caller back.
declare
    v_statement text;
begin
    for v_statement in select jsonb_array_elements_text(p_statements) loop
        execute v_statement;
    end loop;
end;
$$;

revoke all on function _hold_referenced_tables(regclass) from public;
revoke all on function _suspend_foreign_keys(regclass) from public;
revoke all on function _suspend_indexes(regclass, boolean) from public;
revoke all on function _reinstate(jsonb) from public;
