-- The CSV migration's half in the database. dataarch migrate COPYs a file's
-- raw lines into the session's temporary table csv_lines(line_number,
-- raw_line) and calls ingest_csv_lines, which turns the lines into row objects
-- and runs them through the same core as ingest_batch (_ingest_rows).
--
-- Raises DAT04 when the file is not a CSV of the table at all, so nothing of
-- it is loaded.

create or replace function _split_quoted_csv_line(p_line text)
returns text[]
language sql immutable parallel safe
as $$
    -- The fields of a CSV line that holds quotes (RFC 4180); an empty field
    -- is NULL; NULL when the quoting is broken.
    select case when string_agg(m[1] || m[2], '' order by n) = p_line
        then array_agg(case
            when m[1] like '"%' then replace(substr(m[1], 2, length(m[1]) - 2), '""', '"')
            else nullif(m[1], '')
        end order by n)
    end
    from regexp_matches(p_line, '("(?:[^"]|"")*"|[^,"]*)(,|$)', 'g')
        with ordinality as x (m, n)
    where m[1] <> '' or m[2] <> '' or n = 1
$$;

create or replace function _split_csv_line(p_line text)
returns text[]
language sql immutable parallel safe
as $$
    -- The fields of one CSV line; an empty field is NULL. A plain expression,
    -- so it is inlined: a sub-select here made every line pay a function call
    -- (15 us); only lines with quotes take the slower parser.
    select case
        when strpos(p_line, '"') = 0 then string_to_array(p_line, ',', '')
        else _split_quoted_csv_line(p_line)
    end
$$;

create or replace function ingest_csv_lines(p_table text, p_file text, p_sha256 text)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: loads every line of pg_temp.csv_lines into p_table through the
-- validation core, logs each rejected line (file, line number, raw text,
-- reason) in ingest_errors, records the batch and the file's checksum, and
-- returns a summary. A file whose checksum is already recorded for p_table
-- is not read again: the summary says so. Blank lines are skipped, and are
-- neither submitted nor rejected.
declare
    v_cols text[] := _require_table(p_table);
    v_source text := 'csv:' || p_file;
    v_chunk constant integer := 5000;
    v_done record;
    v_batch_id bigint;
    v_last bigint;
    v_from bigint := 1;
    v_rows jsonb;
    v_lines bigint[];
    v_lines_read bigint := 0;
    v_blank bigint := 0;
    v_wellformed bigint := 0;
    v_inserted bigint := 0;
    v_rejected bigint := 0;
    v_n bigint;
    v_ok bigint;
    v_keys jsonb;
begin
    select m.batch_id, m.migrated_at, m.file_name into v_done
    from migrated_files as m
    where m.table_name = p_table and m.sha256 = p_sha256;
    if found then
        return jsonb_build_object(
            'status', 'already_migrated', 'table', p_table, 'file', p_file,
            'batch_id', v_done.batch_id, 'migrated_at', v_done.migrated_at,
            'as_file', v_done.file_name
        );
    end if;

    insert into ingest_batches (table_name, source, mode)
    values (p_table, v_source, 'per_row')
    returning batch_id into v_batch_id;

    select coalesce(max(line_number), 0), count(*) into v_last, v_lines_read
    from csv_lines;
    -- the core already rejects unknown references, set-based; the foreign
    -- keys are re-validated once at the end instead of per inserted row
    v_keys := _suspend_foreign_keys(p_table::regclass);

    create temp table if not exists csv_chunk (
        line_number bigint, raw_line text, fields text[]
    ) on commit drop;

    while v_from <= v_last loop
        -- One chunk: split the lines, log the malformed ones, ingest the rest.
        -- A blank line (nothing but a CR or a byte-order mark) splits to {}.
        truncate csv_chunk;
        insert into csv_chunk
        select
            c.line_number,
            c.raw_line,
            _split_csv_line(rtrim(
                case when c.line_number = 1 then ltrim(c.raw_line, U&'\FEFF')
                    else c.raw_line end,
                E'\r'
            ))
        from csv_lines as c
        where c.line_number between v_from and v_from + v_chunk - 1;
        delete from csv_chunk where coalesce(cardinality(fields), 1) = 0 or raw_line is null;
        get diagnostics v_n = row_count;
        v_blank := v_blank + v_n;

        insert into ingest_errors (
            batch_id, table_name, source_file, line_number, raw_line, reason_code,
            field, message, sqlstate, source
        )
        select
            v_batch_id, p_table, p_file, k.line_number, k.raw_line, 'malformed_line', null,
            format(
                'line has %s comma-separated fields; %s needs %s (%s)',
                coalesce(cardinality(k.fields)::text, 'unbalanced quotes and no'),
                p_table, cardinality(v_cols), array_to_string(v_cols, ', ')
            ),
            '22P04', v_source
        from csv_chunk as k
        where cardinality(k.fields) is distinct from cardinality(v_cols);
        get diagnostics v_ok = row_count;
        v_rejected := v_rejected + v_ok;

        select
            jsonb_agg(
                jsonb_strip_nulls(jsonb_object(v_cols, k.fields)) order by k.line_number
            ),
            array_agg(k.line_number order by k.line_number)
        into v_rows, v_lines
        from csv_chunk as k
        where cardinality(k.fields) = cardinality(v_cols);

        if v_rows is not null then
            v_wellformed := v_wellformed + cardinality(v_lines);
            with outcome as materialized (
                select * from _ingest_rows(p_table, v_rows, false)
            ),
            logged as (
                insert into ingest_errors (
                    batch_id, table_name, source_file, line_number, raw_line,
                    reason_code, field, message, constraint_name, sqlstate, source
                )
                select
                    v_batch_id, p_table, p_file, k.line_number, k.raw_line,
                    o.reason_code, o.field,
                    _rejection_message(o.field, o.reason_code, rc.description),
                    _constraint_for(p_table, o.field, o.reason_code), rc.sqlstate, v_source
                from outcome as o
                join reason_codes as rc on rc.reason_code = o.reason_code
                join csv_chunk as k on k.line_number = v_lines[o.idx + 1]
                returning 1
            )
            select
                (select count(*) from outcome where reason_code is null),
                (select count(*) from logged)
            into v_ok, v_n;
            v_inserted := v_inserted + v_ok;
            v_rejected := v_rejected + v_n;
        end if;
        v_from := v_from + v_chunk;
    end loop;

    if v_wellformed = 0 and v_lines_read > v_blank then
        raise exception 'file % is not a CSV of %: no line has the % comma-separated fields (%) it needs',
            p_file, p_table, cardinality(v_cols), array_to_string(v_cols, ', ')
            using errcode = 'DAT04';
    end if;

    perform _reinstate_foreign_keys(p_table::regclass, v_keys);
    update ingest_batches
    set submitted = v_inserted + v_rejected, inserted = v_inserted,
        rejected = v_rejected, finished_at = clock_timestamp()
    where batch_id = v_batch_id;
    insert into migrated_files (table_name, sha256, file_name, batch_id)
    values (p_table, p_sha256, p_file, v_batch_id);

    return jsonb_build_object(
        'status', 'migrated', 'table', p_table, 'file', p_file, 'batch_id', v_batch_id,
        'lines', v_lines_read, 'blank', v_blank, 'submitted', v_inserted + v_rejected,
        'inserted', v_inserted, 'rejected', v_rejected,
        'by_reason', coalesce((
            select jsonb_object_agg(reason_code, n)
            from (
                select e.reason_code, count(*) as n from ingest_errors as e
                where e.batch_id = v_batch_id group by e.reason_code
            ) as r
        ), '{}'::jsonb)
    );
end;
$$;

revoke all on function _split_csv_line(text) from public;
revoke all on function _split_quoted_csv_line(text) from public;
revoke all on function ingest_csv_lines(text, text, text) from public;
