-- The data dictionary, read (data_dictionary) and turned into code (the
-- DO block at the end). The rows of dictionary_tables and
-- dictionary_columns (schema/017) are the only place the HR tables and
-- their columns are listed; the functions below are generated from them on
-- every install, as immutable SQL with constant bodies, so the planner
-- still folds them into the plans that use them (a function that read the
-- dictionary's tables would be a lookup on every call of the hot path).

create or replace function data_dictionary()
returns jsonb
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise: every table of the HR data in load order (referenced tables
    -- first), each with its CSV file names and its columns in CSV order:
    -- name, field rule, SQL type, whether NULL is refused, the table it
    -- references, and the named constraints that hold it. Types, NOT NULL,
    -- constraints and references are read from the catalogue, so they are
    -- what the tables are, not what someone wrote down.
    select coalesce(jsonb_agg(jsonb_build_object(
        'table', t.table_name,
        'load_order', t.load_order,
        'file_names', to_jsonb(t.file_names),
        'id_column', (
            select c.column_name from dictionary_columns as c
            where c.table_name = t.table_name and c.csv_position = 1
        ),
        'columns', (
            select jsonb_agg(jsonb_build_object(
                'name', c.column_name,
                'rule', c.rule,
                'type', format_type(a.atttypid, a.atttypmod),
                'not_null', a.attnotnull,
                'references', (
                    select f.confrelid::regclass::text from pg_constraint as f
                    where f.conrelid = a.attrelid and f.contype = 'f'
                        and f.conkey = array[a.attnum]
                ),
                'constraints', (
                    select coalesce(jsonb_agg(k.conname::text order by k.conname), '[]')
                    from pg_constraint as k
                    where k.conrelid = a.attrelid and a.attnum = any(k.conkey)
                )
            ) order by c.csv_position)
            from dictionary_columns as c
            join pg_attribute as a
                on a.attrelid = c.table_name::regclass and a.attname = c.column_name
            where c.table_name = t.table_name
        )
    ) order by t.load_order), '[]')
    from dictionary_tables as t
$$;

grant execute on function data_dictionary() to public;

do $generate$
declare
    v_columns text;  -- the CASE arms of _table_columns
    v_tables text[];
begin
    select string_agg(format('when %L then %L::text[]', t.table_name, (
        select array_agg(c.column_name order by c.csv_position)
        from dictionary_columns as c where c.table_name = t.table_name
    )), ' ' order by t.load_order), array_agg(t.table_name order by t.load_order)
    into v_columns, v_tables
    from dictionary_tables as t;

    execute format($f$
        create or replace function _data_tables()
        returns text[]
        language sql immutable parallel safe
        as $body$ select %L::text[] $body$
    $f$, v_tables);
    comment on function _data_tables() is
    'Generated from dictionary_tables: the HR tables in load order, referenced ones first.';

    execute format($f$
        create or replace function _table_columns(p_table text)
        returns text[]
        language sql immutable parallel safe
        as $body$ select case p_table %s end $body$
    $f$, v_columns);
    comment on function _table_columns(text) is
    'Generated from dictionary_columns: a table''s columns in CSV order (the id first,'
    ' the name second); NULL for a table that is not in the dictionary.';
end;
$generate$;

-- _table_columns stays callable by everyone: it is the data dictionary's
-- column list, and table_checksum (run by the API role) needs it.
grant execute on function _data_tables() to public;
grant execute on function _table_columns(text) to public;
