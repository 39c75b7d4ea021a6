-- The CSV migration's half in the database. dataarch migrate COPYs a file's
-- raw lines into the session's temporary table csv_lines(line_number,
-- raw_line). judge_csv_lines splits a range of them into fields, stages them
-- in pg_temp.incoming_rows and keeps _judge_rows' verdicts in
-- pg_temp.judged_rows; ingest_csv_lines then runs the whole file through the
-- same core as ingest_batch (_insert_rows), in one set-based pass. A large
-- file is judged by two sessions at once, each over half of its lines: the
-- verdicts are per line, so they are copied into the one transaction that
-- inserts, logs and commits the file.
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

create or replace function _csv_line_fields(p_line_number bigint, p_raw_line text)
returns text[]
language sql immutable parallel safe
as $$
    -- The fields of a raw file line: its CR (a CRLF file) and, on line 1, a
    -- byte-order mark are not data. A blank line gives {}.
    select _split_csv_line(rtrim(
        case when p_line_number = 1 then ltrim(p_raw_line, U&'\FEFF') else p_raw_line end,
        E'\r'
    ))
$$;

create or replace function judge_csv_lines(p_table text, p_first bigint, p_last bigint)
returns bigint
language plpgsql
set search_path = pg_catalog, public, pg_temp
set work_mem = '256MB'
as $$
-- Promise: judges the lines of pg_temp.csv_lines numbered p_first to p_last
-- (NULL: to the end) and adds their verdicts to pg_temp.judged_rows, where
-- ingest_csv_lines finds them; blank lines are left out. Returns how many
-- lines were judged. Changes no table but the session's own.
declare
    v_judged bigint;
begin
    perform _prepare_incoming_rows(p_keep_judged => true);
    insert into pg_temp.incoming_rows
    select
        l.line_number, 'object', coalesce(cardinality(l.f), -1),
        l.f[1], case when l.f[1] is not null then 'string' end,
        l.f[2], case when l.f[2] is not null then 'string' end,
        l.f[3], case when l.f[3] is not null then 'string' end,
        l.f[4], case when l.f[4] is not null then 'string' end,
        l.f[5], case when l.f[5] is not null then 'string' end,
        null
    from (
        select c.line_number, _csv_line_fields(c.line_number, c.raw_line) as f
        from csv_lines as c
        where c.raw_line is not null
            and c.line_number >= p_first
            and (p_last is null or c.line_number <= p_last)
        offset 0
    ) as l
    where coalesce(cardinality(l.f), -1) <> 0;

    insert into pg_temp.judged_rows select * from _judge_rows(p_table);
    get diagnostics v_judged = row_count;
    truncate pg_temp.incoming_rows;  -- judged: _classify_rows must not judge them again
    return v_judged;
end;
$$;

create or replace function already_migrated(p_table text, p_file text, p_sha256 text)
returns jsonb
language sql stable
set search_path = pg_catalog, public
as $$
    -- The summary ingest_csv_lines gives for a file whose content (p_sha256)
    -- was migrated into p_table before, or NULL. dataarch migrate asks first,
    -- so a rerun reads no file again.
    select jsonb_build_object(
        'status', 'already_migrated', 'table', p_table, 'file', p_file,
        'batch_id', m.batch_id, 'migrated_at', m.migrated_at, 'as_file', m.file_name
    )
    from migrated_files as m
    where m.table_name = p_table and m.sha256 = p_sha256
$$;

create or replace function ingest_csv_lines(p_table text, p_file text, p_sha256 text)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
-- the whole file is judged in one statement: room for its sorts and hashes
set work_mem = '256MB'
as $$
-- Promise: loads every line of pg_temp.csv_lines into p_table through the
-- validation core, logs each rejected line (file, line number, raw text,
-- reason) in ingest_errors, records the batch and the file's checksum, and
-- returns a summary. Lines already judged by judge_csv_lines (in
-- pg_temp.judged_rows) are not judged again; with none, all are judged
-- here. A file whose checksum is already recorded for p_table
-- is not read again: the summary says so. Blank lines are skipped, and are
-- neither submitted nor rejected. The file is one batch: a repeated id is
-- duplicate_in_batch wherever it repeats.
declare
    v_cols text[] := _require_table(p_table);
    v_source text := 'csv:' || p_file;
    v_done jsonb;
    v_batch_id bigint;
    v_lines_read bigint;
    v_staged bigint;
    v_wellformed bigint;
    v_inserted bigint;
    v_rejected bigint;
    v_suspended jsonb;
begin
    v_done := already_migrated(p_table, p_file, p_sha256);
    if v_done is not null then
        return v_done;
    end if;

    insert into ingest_batches (table_name, source, mode)
    values (p_table, v_source, 'per_row')
    returning batch_id into v_batch_id;

    perform _prepare_incoming_rows(p_keep_judged => true);
    if not exists (select from pg_temp.judged_rows) then
        perform judge_csv_lines(p_table, 1, null);
    end if;
    select count(*) into v_lines_read from csv_lines;

    -- An initial load (a large file, at least as many lines as the table has
    -- rows by the statistics, which need no lock on it): its secondary
    -- indexes are rebuilt once after the insert instead of grown a row at a
    -- time. Dropping them locks the table until commit; nothing of this
    -- transaction has touched it before, so no lock is upgraded.
    if v_lines_read >= 100000 and v_lines_read >= (
        select greatest(c.reltuples, s.n_live_tup)
        from pg_class as c
        left join pg_stat_all_tables as s on s.relid = c.oid
        where c.oid = p_table::regclass
    ) then
        v_suspended := _suspend_indexes(p_table::regclass, p_keep_constraints => true);
    end if;

    with outcome as materialized (
        select * from _insert_rows(p_table)
    ),
    logged as (
        insert into ingest_errors (
            batch_id, table_name, source_file, line_number, raw_line,
            reason_code, field, message, constraint_name, sqlstate, source
        )
        select
            v_batch_id, p_table, p_file, o.idx, c.raw_line, o.reason_code, o.field,
            case when o.reason_code = 'malformed_line' then format(
                'line has %s comma-separated fields; %s needs %s (%s)',
                coalesce(
                    cardinality(_csv_line_fields(c.line_number, c.raw_line))::text,
                    'unbalanced quotes and no'
                ),
                p_table, cardinality(v_cols), array_to_string(v_cols, ', ')
            ) else _rejection_message(o.field, o.reason_code, rc.description) end,
            _constraint_for(p_table, o.field, o.reason_code), rc.sqlstate, v_source
        -- only the rejected lines are joined to their raw text: joined first,
        -- every line of the file paid for the lookups (1.4 s a million)
        from (select * from outcome where reason_code is not null offset 0) as o
        join reason_codes as rc on rc.reason_code = o.reason_code
        join csv_lines as c on c.line_number = o.idx
        returning reason_code
    )
    select
        (select count(*) from outcome where reason_code is null),
        (select count(*) from logged),
        (select count(*) from logged where reason_code <> 'malformed_line')
    into v_inserted, v_rejected, v_wellformed;
    v_wellformed := v_wellformed + v_inserted;
    v_staged := v_inserted + v_rejected;  -- every judged line comes back once

    if v_wellformed = 0 and v_staged > 0 then
        raise exception 'file % is not a CSV of %: no line has the % comma-separated fields (%) it needs',
            p_file, p_table, cardinality(v_cols), array_to_string(v_cols, ', ')
            using errcode = 'DAT04';
    end if;

    if v_suspended is not null then
        perform _reinstate(v_suspended);
    end if;

    update ingest_batches
    set submitted = v_inserted + v_rejected, inserted = v_inserted,
        rejected = v_rejected, finished_at = clock_timestamp()
    where batch_id = v_batch_id;
    insert into migrated_files (table_name, sha256, file_name, batch_id)
    values (p_table, p_sha256, p_file, v_batch_id);

    return jsonb_build_object(
        'status', 'migrated', 'table', p_table, 'file', p_file, 'batch_id', v_batch_id,
        'lines', v_lines_read, 'blank', v_lines_read - v_staged,
        'submitted', v_inserted + v_rejected,
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
revoke all on function _csv_line_fields(bigint, text) from public;
revoke all on function judge_csv_lines(text, bigint, bigint) from public;
revoke all on function already_migrated(text, text, text) from public;
revoke all on function ingest_csv_lines(text, text, text) from public;
