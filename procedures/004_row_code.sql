-- The code that stages, judges and checks rows, generated from the data
-- dictionary on every install (the DO block at the end). Each function
-- below whose name starts `_code_` returns the SQL of one generated
-- function; `select _code_judge('jobs', _code_json_rows('jobs'))` shows what runs.
-- Generated, not written per column: a migration that adds a column or a
-- table (and its dictionary rows) changes what they return, and the next
-- install regenerates them. Static SQL per table keeps the plans PL/pgSQL
-- caches, and the rules inlined in them, as fast as hand-written code.
--
-- A row is staged and judged by one statement: the rules read its fields
-- straight from the JSON batch or the CSV record, as (text, JSON type) slots
-- in CSV order (_code_json_rows, _code_csv_lines), and the verdict goes into
-- pg_temp.judged_rows (generated too): the row's verdict (reason_code,
-- field) or its typed values, one column for every column name of the
-- dictionary (a name two tables share, as a foreign key does, has one
-- type), plus the row's id. No table holds the rows in between (staging
-- them in one first made a million-line migration ~8 % slower).

create or replace function _dictionary_columns(p_table text)
returns table (
    csv_position integer, column_name text, rule text, sql_type text,
    reference_name text, referenced_table text, referenced_column text
)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise: p_table's columns in CSV order, each with its field rule and
    -- SQL type, and for a column that alone references another table, that
    -- foreign key's name, table and column, all as the catalogue has them.
    select
        c.csv_position, c.column_name, c.rule, format_type(a.atttypid, a.atttypmod),
        f.conname::text, f.confrelid::regclass::text, r.attname::text
    from dictionary_columns as c
    join pg_attribute as a
        on a.attrelid = c.table_name::regclass and a.attname = c.column_name
    left join pg_constraint as f
        on f.conrelid = a.attrelid and f.contype = 'f' and f.conkey = array[a.attnum]
    left join pg_attribute as r on r.attrelid = f.confrelid and r.attnum = f.confkey[1]
    where c.table_name = p_table
    order by c.csv_position
$$;

create or replace function _reference_reason(p_column text)
returns text
language sql immutable
as $$
    -- The reason a row gets when its p_column names a row that does not
    -- exist: department_id -> unknown_department (reason_codes holds it).
    select 'unknown_' || regexp_replace(p_column, '_id$', '')
$$;

create or replace function _rule_value(p_rule text, p_text text, p_type text)
returns text
language sql immutable
as $$
    -- The SQL that turns a field's text (of JSON type p_type), once its rule
    -- passed, into the value stored: an id as an integer, a name trimmed, a
    -- date-time cast. An id the rule passed is digits, signed or spaced
    -- only as a string, which the integer cast reads; only a JSON number
    -- written with a fraction (12.0) goes through numeric (an exponent is
    -- written out first: _code_json_rows): a million CSV ids 0.12 -> 0.05 s.
    select case p_rule
        when 'id' then format(
            'case when %2$s = ''number'' and strpos(%1$s, ''.'') > 0'
            ' then %1$s::numeric::integer else %1$s::integer end', p_text, p_type)
        when 'name' then format('btrim(%s, E'' \t\r\n'')', p_text)
        when 'datetime' then format('%s::timestamptz', p_text)
    end
$$;

create or replace function _code_judged_columns()
returns text
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.judged_rows' columns: idx, the first broken rule
-- (reason_code, field), the row's id when usable, and one column for each
-- column name of the dictionary, typed as its table has it. Refuses a name
-- two tables type differently, or one of the verdict's own names.
declare
    v_clash text;
begin
    select c.column_name into v_clash
    from dictionary_tables as t
    cross join lateral _dictionary_columns(t.table_name) as c
    group by c.column_name
    having count(distinct c.sql_type) > 1 or c.column_name in ('idx', 'reason_code', 'field', 'id');
    if found then
        raise exception 'column % cannot be staged: two tables type it differently, or it'
            ' is one of idx, reason_code, field, id', v_clash;
    end if;
    return 'idx bigint, reason_code text, field text, id integer, ' || (
        select string_agg(format('%I %s', c.column_name, c.sql_type), ', '
            order by c.first_seen)
        from (
            select d.column_name, min(d.sql_type) as sql_type,
                min(t.load_order * 1000 + d.csv_position) as first_seen
            from dictionary_tables as t
            cross join lateral _dictionary_columns(t.table_name) as d
            group by d.column_name
        ) as c
    );
end;
$$;

create or replace function _code_prepare_judged()
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise (of the generated function): pg_temp.judged_rows exists, in
    -- the shape the dictionary gives today, and is empty; with p_keep, it
    -- keeps what it holds.
    select format($f$
create or replace function _prepare_judged_rows(p_keep boolean default false)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $body$
-- Generated by procedures/004_row_code.sql. Refuses (DAT10) a temporary
-- object of another's under the name. The table lives as long as the
-- session and is emptied at every commit, so a pooled connection creates
-- it once (a table per batch would churn the catalogue and throw away
-- every cached plan that reads it); a table of an older shape (a
-- migration changed the dictionary since) is made again.
begin
    if not _staging_table_fits('judged_rows', %1$L) then
        create temp table judged_rows (%1$s) on commit delete rows;
        -- a session of the caller's role pipes verdicts in and out (migrate)
        execute format('grant select, insert on pg_temp.judged_rows to %%I', session_user);
    elsif not p_keep and exists (select from pg_temp.judged_rows) then
        perform _empty_judged_rows();  -- verdicts an earlier call left unused
    end if;
end;
$body$
$f$, _code_judged_columns())
$$;

create or replace function _code_json_rows(p_table text)
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise: the SQL of a relation of the elements of p_rows (a JSON
    -- array) as rows of p_table to judge: idx (the 0-based index), row_type
    -- (the element's JSON type), field_count (an array's length), a
    -- (textK, typeK) slot per CSV position, each field taken out of its row
    -- once: from an object by column name, from an array by position (a CSV
    -- record's fields, where null, like an empty CSV field, is absent), and
    -- unexpected_field, the first key of an object that is not a column. A
    -- number's text is short whatever its exponent (_json_text), unless
    -- ingest_batch_json saw that the body holds no exponent (v_careful
    -- false): ->> then writes every number out in as many characters as the
    -- body holds it, and costs ~45 % less (measured on 1000-row batches).
    -- Either way the verdicts are the same (tests/test_properties.py).
    select format($sql$
            select
                e.ord - 1 as idx,
                k.kind as row_type,
                case when k.kind = 'array' then jsonb_array_length(e.r) end as field_count,
                %s,
                case when k.kind = 'object' and (e.r - %L::text[]) <> '{}'::jsonb then (
                    select min(x) from jsonb_object_keys(e.r - %2$L::text[]) as x
                ) end as unexpected_field
            from jsonb_array_elements(p_rows) with ordinality as e (r, ord)
            cross join lateral (select jsonb_typeof(e.r) as kind) as k
            offset 0$sql$,
        string_agg(format($slot$
                case when v_careful then _json_text(case when k.kind = 'array'
                    then e.r -> %1$s else e.r -> %2$L end)
                    when k.kind = 'array' then e.r ->> %1$s else e.r ->> %2$L end as text%3$s,
                case when k.kind = 'array' then nullif(jsonb_typeof(e.r -> %1$s), 'null')
                    else jsonb_typeof(e.r -> %2$L) end as type%3$s$slot$,
            c.csv_position - 1, c.column_name, c.csv_position), ',' order by c.csv_position),
        array_agg(c.column_name order by c.csv_position))
    from _dictionary_columns(p_table) as c
$$;

create or replace function _code_csv_lines(p_table text)
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise: the SQL of a relation of the records of pg_temp.csv_lines of
    -- the pieces p_pieces (all of them when NULL) as rows of p_table to
    -- judge, in the shape _code_json_rows gives: idx is the line number, each
    -- field a string, an empty one absent; a line the reader would not read
    -- whole is there by its reason alone.
    select format($sql$
            select
                l.line_number as idx,
                case when l.reason = 'too_long' then 'too_long' else 'array' end as row_type,
                case when l.problem is null then coalesce(cardinality(l.f), 0) else -1 end
                    as field_count,
                %s,
                null::text as unexpected_field
            from (
                select
                    c.line_number, c.problem, c.reason,
                    _record_fields(c.fields, c.raw_line, p_delimiter) as f
                from pg_temp.csv_lines as c
                where p_pieces is null or c.piece = any(p_pieces)
                offset 0
            ) as l
            offset 0$sql$,
        string_agg(format(
            'l.f[%1$s] as text%1$s, case when l.f[%1$s] is not null then ''string'' end as type%1$s',
            c.csv_position), ', ' order by c.csv_position))
    from _dictionary_columns(p_table) as c
$$;

create or replace function _code_judge(p_table text, p_rows text)
returns text
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: one INSERT into pg_temp.judged_rows of the verdict on every row
-- of the relation p_rows (the SQL _code_json_rows or _code_csv_lines gives)
-- as a row of p_table, on its own: the first broken
-- rule (reason_code, field), else the typed, trimmed values. Rules run in
-- column order, then unexpected keys, then references (one hashed NOT IN a
-- reference; _insert_valid_rows checks again under lock). OFFSET 0 fences keep
-- the planner from re-evaluating each inlined rule in every later use of
-- its result. A rejected row keeps its id when the id itself is usable: a
-- later row with that id resolves the rejection.
declare
    v_n integer;
    v_problems text;  -- _<rule>_problem(slot) as pK, a column each
    v_first text;     -- coalesce(pK, ...) in column order
    v_field text;     -- when pK is not null then 'column'
    v_texts text;     -- r.textK, carried to the casts
    v_values text;    -- the typed value of each column, for a valid row
    v_columns text;   -- the judged_rows columns they fill
    v_refs text;      -- when a reference is broken then its reason
    v_ref_fields text;
    v_selected text;  -- v.column, for the final select
    v_id_type text;
begin
    select
        count(*),
        string_agg(format('_%s_problem(i.text%s, i.type%2$s) as p%2$s', c.rule, c.csv_position),
            ', ' order by c.csv_position),
        string_agg(format('r.p%s', c.csv_position), ', ' order by c.csv_position),
        string_agg(format('when r.p%s is not null then %L', c.csv_position, c.column_name),
            ' ' order by c.csv_position),
        string_agg(format('r.text%s, r.type%1$s', c.csv_position), ', ' order by c.csv_position),
        -- the id column's value is the row's id, cast once (judged, below)
        string_agg(format('case when j.reason_code is null then %s end as %I',
            case when c.csv_position = 1 then 'j.id' else _rule_value(c.rule,
                format('j.text%s', c.csv_position), format('j.type%s', c.csv_position)) end,
            c.column_name), ', ' order by c.csv_position),
        string_agg(format('%I', c.column_name), ', ' order by c.csv_position),
        coalesce(string_agg(format('when t.%I not in (select x.%I from %I as x) then %L',
            c.column_name, c.referenced_column, c.referenced_table,
            _reference_reason(c.column_name)), ' ' order by c.csv_position)
            filter (where c.referenced_table is not null), ''),
        coalesce(string_agg(format('when v.verdict = %L then %L',
            _reference_reason(c.column_name), c.column_name), ' ' order by c.csv_position)
            filter (where c.referenced_table is not null), ''),
        string_agg(format('v.%I', c.column_name), ', ' order by c.csv_position),
        min(c.rule) filter (where c.csv_position = 1)
    into v_n, v_problems, v_first, v_field, v_texts, v_values, v_columns, v_refs,
        v_ref_fields, v_selected, v_id_type
    from _dictionary_columns(p_table) as c;
    if v_id_type is distinct from 'id' then
        raise exception 'the first column of % must be its id (rule id)', p_table;
    end if;
    return format($judge$
        insert into pg_temp.judged_rows (idx, reason_code, field, id, %7$s)
        with rules as (
            select
                i.idx, i.unexpected_field,
                case
                    -- a line too long for the reader to read whole (csvrecords.py)
                    when i.row_type = 'too_long' then 'too_long'
                    -- a string is a CSV record its sender could not read
                    when i.row_type = 'string' then 'malformed_line'
                    when i.row_type not in ('object', 'array') then 'invalid_type'
                    when i.row_type = 'array' and i.field_count <> %1$s then 'malformed_line'
                end as p_row,
                %2$s,
                case when i.unexpected_field is not null then 'unexpected_field' end as p_extra,
                %10$s
            from (%13$s) as i
            offset 0
        ),
        judged as (
            select
                r.idx,
                coalesce(r.p_row, %3$s, r.p_extra) as reason_code,
                case when r.p_row is not null then null %4$s
                    when r.p_extra is not null then r.unexpected_field end as field,
                case when r.p1 is null then %11$s end as id,
                %5$s
            from rules as r
            offset 0
        ),
        typed as (
            -- the casts cannot fail: they only run on fields that passed their rule
            select
                j.idx, j.reason_code, j.field, j.id,
                %6$s
            from judged as j
            offset 0
        )
        select
            v.idx, v.verdict,
            case %9$s else v.field end,
            v.id, %12$s
        from (
            select t.*, case when t.reason_code is not null then t.reason_code %8$s end as verdict
            from typed as t
            offset 0
        ) as v
    $judge$,
        v_n, v_problems, v_first, v_field, v_texts, v_values, v_columns, v_refs,
        case when v_ref_fields = '' then 'when false then null' else v_ref_fields end,
        (select string_agg(format('i.text%s, i.type%1$s', k), ', ' order by k)
            from generate_series(1, v_n) as k),
        _rule_value('id', 'r.text1', 'r.type1'),
        v_selected,
        p_rows
    );
end;
$$;

create or replace function _code_recheck(p_table text)
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- Promise: the statements that lock (when p_lock) FOR KEY SHARE the rows
    -- the valid rows of pg_temp.judged_rows reference, as the foreign keys'
    -- per-row triggers would, then mark a valid row whose reference is gone
    -- now with that reference's reason; empty for a table without any.
    -- (Citus cannot lock a reference table's rows in the statement that
    -- inserts into a distributed table: hence statements of their own; and
    -- it reads a reference table in an UPDATE's WHERE as a write to it,
    -- hence the references read in a fenced sub-select.)
    select coalesce(
        string_agg(format($lock$
        if p_lock then
            perform from %1$I as x
            where x.%2$I in (
                select r.%3$I from pg_temp.judged_rows as r where r.reason_code is null
            )
            for key share of x;
        end if;$lock$, c.referenced_table, c.referenced_column, c.column_name), ''
            order by c.csv_position)
        || format($update$
        update pg_temp.judged_rows as r
        set reason_code = case %1$s end, field = case %2$s end
        from (
            select x.idx, %3$s
            from pg_temp.judged_rows as x
            where x.reason_code is null
            offset 0
        ) as g
        where r.idx = g.idx and (%4$s);$update$,
            string_agg(format('when g.gone%s then %L', c.csv_position,
                _reference_reason(c.column_name)), ' ' order by c.csv_position),
            string_agg(format('when g.gone%s then %L', c.csv_position, c.column_name), ' '
                order by c.csv_position),
            -- NOT IN over a sub-select is one hashed lookup a row
            string_agg(format('x.%I not in (select p.%I from %I as p) as gone%s',
                c.column_name, c.referenced_column, c.referenced_table, c.csv_position), ', '
                order by c.csv_position),
            string_agg(format('g.gone%s', c.csv_position), ' or ' order by c.csv_position)
        ), '')
    from _dictionary_columns(p_table) as c
    where c.referenced_table is not null
$$;

create or replace function _code_constraint_for()
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- The arms of _constraint_for, read from the catalogue: for each column,
    -- the named constraint that refuses what its rule rejects. An id's
    -- out_of_range and a date-time's datetime_out_of_range: its one CHECK;
    -- a name's blank_string and too_long: its CHECKs named *_not_blank and
    -- *_max_length; a broken reference: its foreign key; a duplicate id: the
    -- primary key.
    select coalesce(string_agg(format('when p_table = %L and p_field = %L and p_reason = %L then %L',
        x.table_name, x.field, x.reason, x.conname), ' '), 'when false then null')
    from (
        select t.table_name, c.column_name as field, r.reason, k.conname::text as conname
        from dictionary_tables as t
        cross join lateral _dictionary_columns(t.table_name) as c
        join pg_attribute as a
            on a.attrelid = t.table_name::regclass and a.attname = c.column_name
        join pg_constraint as k
            on k.conrelid = a.attrelid and k.conkey = array[a.attnum]
        cross join lateral (
            select case
                when k.contype = 'p' then 'duplicate_id'
                when k.contype = 'f' then _reference_reason(c.column_name)
                when k.contype <> 'c' then null
                when c.rule = 'id' then 'out_of_range'
                when c.rule = 'datetime' then 'datetime_out_of_range'
                when k.conname like '%\_not\_blank' then 'blank_string'
                when k.conname like '%\_max\_length' then 'too_long'
            end as reason
        ) as r
        where r.reason is not null
    ) as x
$$;

create or replace function _staging_table_fits(p_name text, p_columns text)
returns boolean
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true when the session has its own temporary table p_name (see
-- _own_temp_table) with exactly the columns p_columns lists ("name type,
-- ..."); false when it has none, or had one of another shape, which is
-- dropped (a migration changed the dictionary since it was made).
begin
    if not _own_temp_table(p_name) then
        return false;
    end if;
    if (
        select string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)),
            ', ' order by a.attnum)
        from pg_attribute as a
        where a.attrelid = format('pg_temp.%I', p_name)::regclass
            and a.attnum > 0 and not a.attisdropped
    ) = p_columns then
        return true;
    end if;
    execute format('drop table pg_temp.%I', p_name);
    return false;
end;
$$;

create or replace function _empty_judged_rows()
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.judged_rows is empty. While the table is small (a
-- batch) its rows are deleted: TRUNCATE gives the table (and its TOAST
-- table and index) new files, three created and three unlinked a batch,
-- and makes every plan that reads it be planned again; the commit
-- truncates the deleted rows' pages anyway (ON COMMIT DELETE ROWS). Past
-- 8 MB it is truncated: a file's rows cost more to delete, and the rows
-- deleted by many batches of one transaction stay in the table until it
-- commits, for every later batch to read past.
begin
    if pg_relation_size('pg_temp.judged_rows') > 8 * 1024 * 1024 then
        truncate pg_temp.judged_rows;
    else
        delete from pg_temp.judged_rows;
    end if;
end;
$$;

do $generate$
declare
    v_judge_json text;  -- if p_table = ... then <that table's INSERT>, from JSON
    v_judge_csv text;   -- the same, from CSV records
    v_recheck text := '';
    v_rules text;
    v_referenced text;     -- when <table> then <the tables it references>
    v_missing text;
begin
    select string_agg(format('when p_table = %L and p_column = %L then %L',
        t.table_name, c.column_name, c.rule), ' ')
    into v_rules
    from dictionary_tables as t cross join lateral _dictionary_columns(t.table_name) as c;

    select string_agg(r.reason, ', ') into v_missing
    from dictionary_tables as t
    cross join lateral _dictionary_columns(t.table_name) as c
    cross join lateral (select _reference_reason(c.column_name) as reason) as r
    where c.referenced_table is not null
        and not exists (select from reason_codes as rc where rc.reason_code = r.reason);
    if v_missing is not null then
        raise exception 'reason_codes has no %: a migration that adds a reference adds its reason',
            v_missing;
    end if;

    select coalesce(string_agg(format('when %L then %L::text[]', r.table_name, r.tables), ' '), '')
    into v_referenced
    from (
        select t.table_name, array_agg(distinct c.referenced_table) as tables
        from dictionary_tables as t cross join lateral _dictionary_columns(t.table_name) as c
        where c.referenced_table is not null
        group by t.table_name
    ) as r;

    select
        string_agg(format('if p_table = %L then %s; ', t.table_name,
            _code_judge(t.table_name, _code_json_rows(t.table_name))), 'els' order by t.load_order),
        string_agg(format('if p_table = %L then %s; ', t.table_name,
            _code_judge(t.table_name, _code_csv_lines(t.table_name))), 'els' order by t.load_order),
        string_agg(format('if p_table = %L then %s ', t.table_name,
            _code_recheck(t.table_name)), 'els' order by t.load_order)
    into v_judge_json, v_judge_csv, v_recheck
    from dictionary_tables as t;

    execute _code_prepare_judged();

    execute format($f$
        create or replace function _judge_json_rows(p_table text, p_rows jsonb)
        returns bigint
        language plpgsql
        set search_path = pg_catalog, public, pg_temp
        as $body$
        -- Generated by procedures/004_row_code.sql (_code_judge says what it
        -- promises, for the rows _code_json_rows gives). Empties
        -- pg_temp.judged_rows first: a batch is judged whole, in one call.
        declare
            v_careful constant boolean :=
                current_setting('dataarch.exponents', true) is distinct from 'none';
            v_judged bigint;
        begin
            perform _prepare_judged_rows();
            -- the rules read the referenced tables: locked first, so that a
            -- wait for one says who holds it (procedures/003)
            perform _lock_referenced_tables(p_table);
            %s end if;
            get diagnostics v_judged = row_count;
            return v_judged;
        end;
        $body$
    $f$, v_judge_json);

    execute format($f$
        create or replace function _judge_csv_lines(
            p_table text, p_delimiter text, p_pieces integer[]
        )
        returns bigint
        language plpgsql
        set search_path = pg_catalog, public, pg_temp
        as $body$
        -- Generated by procedures/004_row_code.sql (_code_judge says what it
        -- promises, for the records _code_csv_lines gives). Adds to
        -- pg_temp.judged_rows: a file is judged a share at a time.
        declare
            v_judged bigint;
        begin
            perform _lock_referenced_tables(p_table);  -- as _judge_json_rows
            %s end if;
            get diagnostics v_judged = row_count;
            return v_judged;
        end;
        $body$
    $f$, v_judge_csv);

    execute format($f$
        create or replace function _recheck_references(p_table text, p_lock boolean)
        returns void
        language plpgsql
        set search_path = pg_catalog, public, pg_temp
        as $body$
        -- Generated by procedures/004_row_code.sql (_code_recheck says what it promises).
        begin
            %s end if;
        end;
        $body$
    $f$, v_recheck);

    execute format($f$
        create or replace function _referenced_tables(p_table text)
        returns text[]
        language sql immutable parallel safe
        as $body$ select case p_table %s else '{}'::text[] end $body$
    $f$, v_referenced);
    comment on function _referenced_tables(text) is
    'Generated from the catalogue: the tables p_table''s columns reference (judging reads them).';

    create or replace function _has_references(p_table text)
    returns boolean
    language sql immutable parallel safe
    as $body$ select cardinality(_referenced_tables(p_table)) > 0 $body$;
    comment on function _has_references(text) is
    'Whether p_table has a column that references another table (_referenced_tables).';

    execute format($f$
        create or replace function _column_rule(p_table text, p_column text)
        returns text
        language sql immutable parallel safe
        as $body$ select case %s end $body$
    $f$, v_rules);
    comment on function _column_rule(text, text) is
    'Generated from dictionary_columns: the field rule that judges a column (id, name or datetime).';

    execute format($f$
        create or replace function _constraint_for(p_table text, p_field text, p_reason text)
        returns text
        language sql immutable parallel safe
        as $body$ select case %s end $body$
    $f$, _code_constraint_for());
    comment on function _constraint_for(text, text, text) is
    'Generated from the catalogue (_code_constraint_for): the named constraint that would'
    ' refuse a row rejected for p_reason in p_field; NULL when none has a name.';
end;
$generate$;

revoke all on function _dictionary_columns(text) from public;
revoke all on function _code_judged_columns() from public;
revoke all on function _code_prepare_judged() from public;
revoke all on function _code_json_rows(text) from public;
revoke all on function _code_csv_lines(text) from public;
revoke all on function _code_judge(text, text) from public;
revoke all on function _code_recheck(text) from public;
revoke all on function _code_constraint_for() from public;
revoke all on function _staging_table_fits(text, text) from public;
revoke all on function _empty_judged_rows() from public;
revoke all on function _prepare_judged_rows(boolean) from public;
revoke all on function _judge_json_rows(text, jsonb) from public;
revoke all on function _judge_csv_lines(text, text, integer[]) from public;
revoke all on function _recheck_references(text, boolean) from public;
revoke all on function _has_references(text) from public;
revoke all on function _referenced_tables(text) from public;
