-- The CSV migration's half in the database. dataarch/csvrecords.py reads
-- the file (what a record is lives there) and COPYs its pieces, in binary,
-- into the session's pg_temp.csv_pieces: blocks of plain lines (no quote,
-- no NUL), which are split here on the delimiter, and records it parsed or
-- found broken. Nothing of the data is interpreted by COPY.
-- judge_csv_lines expands the pieces into pg_temp.csv_lines, one row a
-- record, and keeps the verdicts on them (_judge_csv_lines) in
-- pg_temp.judged_rows; ingest_csv_lines then runs the whole file
-- through the same core as ingest_batch (_insert_valid_rows), in one set-based
-- pass. A large file is judged by several sessions at once, each over its
-- share of the pieces: the verdicts are per record, so they are copied into
-- the one transaction that inserts, logs and commits the file.
--
-- Raises DAT04 when the file is not a CSV of the table at all, so nothing of
-- it is loaded.

create or replace function csv_begin(p_table text default null)
returns void
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: empty pg_temp.csv_pieces, which the caller may COPY into, and
-- pg_temp.csv_lines, both dropped at commit. One file a transaction. With
-- p_table (the session that will insert), waits until no other load into
-- p_table runs, and keeps others out until this transaction ends: two
-- loads of one file are one load and a no-op, never two index rebuilds
-- tripping over each other; then takes p_table's lock for writing, before
-- any other (procedures/003). Each wait is bounded by lock_timeout and
-- ends in 55P03 naming who holds the table.
declare
    v_key bigint;
begin
    if p_table is not null then
        perform _require_table(p_table);
        v_key := hashtextextended('dataarch.load:' || p_table, 0);
        begin
            perform pg_advisory_xact_lock(v_key);
        exception when lock_not_available then
            raise exception '% is busy: % holds it', p_table,
                lock_holders(p_table::regclass, v_key)
                using errcode = '55P03',
                    hint = 'Another load into it is running; try again when it has finished.';
        end;
        perform _lock_tables(jsonb_build_object(p_table, 'row exclusive'));
    end if;
    if _own_temp_table('csv_pieces') then
        drop table pg_temp.csv_pieces;
    end if;
    if _own_temp_table('csv_lines') then
        drop table pg_temp.csv_lines;
    end if;
    create temp table csv_pieces (
        piece integer not null,       -- its number in the file, from 0
        first_line bigint not null,   -- physical line number of its first line
        lines integer not null,       -- physical lines it covers
        is_record boolean not null,   -- one record, or a block of one-line records
        body text not null,           -- the block's lines joined by LF, or the record
        fields text[],                -- a record's fields, when it parsed
        problem text,                 -- why a record is broken
        reason text                   -- and its reason code, when not malformed_line
    ) on commit drop;
    -- a body is a megabyte of text: stored out of line but not compressed
    -- (pglz took 1 s a million lines, for a table that lives one transaction)
    alter table pg_temp.csv_pieces alter column body set storage external;
    -- no index: only the rejected records are looked up, with one hash join
    create temp table csv_lines (
        line_number bigint not null,  -- a record's first physical line
        lines integer not null,       -- physical lines it spans
        raw_line text not null,       -- as read, without its line ending
        fields text[],                -- NULL: split raw_line on the delimiter
        problem text,                 -- why a broken record is broken
        reason text,                  -- and its reason code, when not malformed_line
        piece integer not null
    ) on commit drop;
    execute format('grant insert on pg_temp.csv_pieces to %I', session_user);
end;
$$;

create or replace function _require_csv_staging()
returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: csv_begin made this transaction's pg_temp.csv_pieces and
-- csv_lines, else DAT02 (or DAT10 for objects of another's under those
-- names), before either is read.
begin
    if not (_own_temp_table('csv_pieces') and _own_temp_table('csv_lines')) then
        raise exception 'csv_begin() was not called in this transaction'
            using errcode = 'DAT02',
                hint = 'Call csv_begin(), COPY the pieces into pg_temp.csv_pieces, then judge.';
    end if;
end;
$$;

create or replace function _expand_csv_pieces()
returns bigint
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the records of the session's pg_temp.csv_pieces are in
-- pg_temp.csv_lines, one row each: a block's non-blank lines (the reader
-- has taken off the CRs of their line endings); a record as the reader
-- gave it. Returns how many.
declare
    v_added bigint;
begin
    perform _require_csv_staging();
    insert into pg_temp.csv_lines (
        line_number, lines, raw_line, fields, problem, reason, piece
    )
    select p.first_line + l.n - 1, 1, l.line, null, null, null, p.piece
    from pg_temp.csv_pieces as p
    cross join lateral string_to_table(p.body, E'\n') with ordinality as l (line, n)
    where not p.is_record and l.line <> ''
    union all
    select p.first_line, p.lines, p.body, p.fields, p.problem, p.reason, p.piece
    from pg_temp.csv_pieces as p
    where p.is_record;
    get diagnostics v_added = row_count;
    return v_added;
end;
$$;

create or replace function _record_fields(p_fields text[], p_raw_line text, p_delimiter text)
returns text[]
language sql immutable parallel safe
as $$
    -- A record's fields: as the reader parsed them, or, for a plain line,
    -- split on the delimiter (an empty field is NULL), as
    -- dataarch/csvrecords.py's split_plain does.
    select coalesce(p_fields, string_to_array(p_raw_line, p_delimiter, ''))
$$;

create or replace function judge_csv_lines(
    p_table text, p_delimiter text, p_pieces integer[] default null
)
returns bigint
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
set work_mem = '256MB'
as $$
-- Promise: the records of the session's pg_temp.csv_pieces are in
-- pg_temp.csv_lines, and the verdicts on its share of them (those of the
-- pieces numbered p_pieces; all when NULL) in pg_temp.judged_rows, where
-- ingest_csv_lines finds them. The caller shares the pieces out
-- (dataarch/migrate.py). A broken record (the reader's problem) is
-- malformed_line. Returns how many records were judged. Changes no table
-- but the session's own.
begin
    perform _require_table(p_table);
    perform _require_csv_staging();
    perform _prepare_judged_rows(p_keep => true);
    if not exists (select from pg_temp.csv_lines) then
        perform _expand_csv_pieces();
    end if;
    return _judge_csv_lines(p_table, p_delimiter, p_pieces);
end;
$$;

create or replace function _table_alone(p_table regclass)
returns boolean
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true when this transaction now holds p_table exclusively, taken
-- without waiting; false, holding nothing more, when anyone else uses it
-- (a backup reading it, an API batch): an initial load then loads it the
-- ordinary way instead of queueing for the table, since a backup's worker
-- sessions would queue behind that request while the backup waits for
-- them, a cycle no server can see.
begin
    execute format('lock table %s in access exclusive mode nowait', p_table);
    return true;
exception when lock_not_available then
    return false;
end;
$$;

create or replace function already_migrated(p_table text, p_file text, p_sha256 text)
returns jsonb
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- The summary ingest_csv_lines gives for a file whose content (p_sha256)
    -- was migrated into p_table before, or NULL. dataarch migrate asks first,
    -- so a rerun reads no file again. open_rejections: its lines still
    -- rejected, which sending it again would not load (a retry does).
    select jsonb_build_object(
        'status', 'already_migrated', 'table', p_table, 'file', p_file,
        'batch_id', m.batch_id, 'migrated_at', m.migrated_at, 'as_file', m.file_name,
        'open_rejections', (
            select count(*) from ingest_errors as e
            where e.batch_id = m.batch_id and e.resolved_at is null and e.closed_at is null
        )
    )
    from migrated_files as m
    where m.table_name = p_table and m.sha256 = p_sha256
$$;

create or replace function _batch_reasons(p_batch_id bigint)
returns jsonb
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- {reason_code: rejections} of one batch, for its summary
    select coalesce(jsonb_object_agg(r.reason_code, r.n), '{}'::jsonb)
    from (
        select e.reason_code, count(*) as n from ingest_errors as e
        where e.batch_id = p_batch_id group by e.reason_code
    ) as r
$$;

create or replace function ingest_csv_lines(
    p_table text,
    p_file text,
    p_sha256 text,
    p_delimiter text default ',',
    p_lines bigint default null,
    p_header boolean default false
)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
-- the whole file is judged in one statement: room for its sorts and hashes
set work_mem = '256MB'
-- the temporary tables' statistics from 3 000 rows, not 30 000 (below)
set default_statistics_target = 10
as $$
-- Promise: loads every record of pg_temp.csv_pieces into p_table through
-- the validation core, logs each rejected record (file, first line number,
-- raw text, reason) in ingest_errors, records the batch and the file's
-- checksum, and returns a summary. Records already judged (in
-- pg_temp.judged_rows, by judge_csv_lines in this or another session) are
-- not judged again; with none, all are judged here. A file whose checksum
-- is already recorded for p_table is not loaded again: the summary says so.
-- p_lines is the file's physical line count as the reader read it: the
-- summary accounts for every line (header, blank, or part of a record).
-- The file is one batch: a repeated id is duplicate_in_batch wherever it
-- repeats.
declare
    v_cols text[] := _require_table(p_table);
    v_source text := 'csv:' || p_file;
    v_separated text := case when p_delimiter = ',' then 'comma-separated fields'
        else format('fields separated by %L', p_delimiter) end;
    v_done jsonb;
    v_batch_id bigint;
    v_records bigint;
    v_record_lines bigint;
    v_wellformed bigint;
    v_inserted bigint;
    v_rejected bigint;
    v_suspended jsonb;
    v_resolving_ids integer[];
    v_resolved integer;
    v_to_log bigint;
    v_skip_log_triggers boolean;
    v_role constant text := current_setting('session_replication_role');
begin
    v_done := already_migrated(p_table, p_file, p_sha256);
    if v_done is not null then
        return v_done;
    end if;

    perform _require_csv_staging();
    insert into ingest_batches (table_name, source, mode)
    values (p_table, v_source, 'per_row')
    returning batch_id into v_batch_id;

    perform _prepare_judged_rows(p_keep => true);
    if not exists (select from pg_temp.judged_rows) then
        perform judge_csv_lines(p_table, p_delimiter);
    end if;
    select count(*), coalesce(sum(c.lines), 0) into v_records, v_record_lines
    from pg_temp.csv_lines as c;
    -- Autovacuum never reaches a temporary table, so its statistics are
    -- taken here. Without them the planner took a file's valid rows for
    -- 0.5 % of it (the default for IS NULL): it counted a million hires by
    -- sorting them (1.5 s instead of 0.5) and sorted every line to find
    -- the text of the rejected ones. The plans need only row counts and
    -- the share of valid rows, which a sample of 3 000 rows gives: a
    -- million lines take ~0.03 s to analyse, against ~0.22 at the default
    -- 30 000 (psql, both tables).
    if v_records >= 10000 then
        analyze pg_temp.judged_rows;
        analyze pg_temp.csv_lines;
    end if;

    -- An initial load (a file of at least _initial_load_from() records, and
    -- at least as many as the table has rows by the statistics, which need
    -- no lock on it): its indexes are rebuilt once after the insert instead
    -- of grown a row at a time.
    -- The primary key too, unless another table's keys need it: the
    -- repeated and taken ids are rejected before the insert, and building
    -- it after a million rows cost ~0.4 s where keeping it cost 0.64
    -- (psql). Its foreign keys are not checked by a trigger a row: with the
    -- referenced tables held in SHARE mode, the references are checked once
    -- more by one statement (_insert_valid_rows) and the triggers skipped where
    -- _skips_row_triggers allows, else the keys are dropped and validated
    -- once after the insert, by one anti-join each (0.23 s a million rows).
    -- Dropping them locks the table until commit; nothing of this
    -- transaction has touched it before, so no lock is upgraded.
    if v_records >= _initial_load_from() and v_records >= (
        select greatest(c.reltuples, s.n_live_tup)
        from pg_class as c
        left join pg_stat_all_tables as s on s.relid = c.oid
        where c.oid = p_table::regclass
    ) and _table_alone(p_table::regclass) then
        perform _one_connection_per_node();
        v_suspended := _suspend_indexes(p_table::regclass,
            p_keep_constraints => cardinality(_referencing_tables(p_table::regclass)) > 0);
        if _skips_row_triggers(p_table::regclass) then
            perform _hold_referenced_tables(p_table::regclass);
        else
            v_suspended := v_suspended || _suspend_foreign_keys(p_table::regclass);
        end if;
    end if;

    -- the verdicts are read where _insert_valid_rows leaves them: returned
    -- as rows, a million of them were copied twice more (~0.25 s)
    perform _insert_valid_rows(p_table, v_batch_id, p_alone => v_suspended is not null);
    -- of the inserted ids, only those an open rejection carries, for
    -- _finish_batch: a million of them cost 0.1 s to gather and 0.28 more
    -- to plan the resolving UPDATE with; and, in the same pass, how many
    -- rejections are to be logged
    select
        count(*) filter (where r.reason_code is null),
        count(*) filter (where r.reason_code is not null),
        coalesce(array_agg(r.id) filter (where r.reason_code is null and r.id in (
            select e.record_id from ingest_errors as e
            where e.table_name = p_table and e.resolved_at is null and e.closed_at is null
                and e.batch_id <> v_batch_id
        )), '{}')
    into v_inserted, v_to_log, v_resolving_ids
    from pg_temp.judged_rows as r;
    v_skip_log_triggers := _log_skips_row_triggers(v_to_log);
    if v_skip_log_triggers then
        perform set_config('session_replication_role', 'replica', true);
    end if;
    with logged as (
        insert into ingest_errors (
            batch_id, table_name, source_file, line_number, raw_line,
            reason_code, field, message, constraint_name, sqlstate, source, record_id
        )
        select
            v_batch_id, p_table, p_file, o.idx, c.raw_line, o.reason_code, o.field,
            case when o.reason_code <> 'malformed_line' and c.reason is null then
                _rejection_message(p_table, o.field, o.reason_code, rc.description)
            when c.problem is not null and c.lines = 1 then c.problem
            when c.problem is not null then
                format('record of lines %s-%s: %s', c.line_number, c.line_number + c.lines - 1,
                    c.problem)
            else format(
                '%s has %s %s; %s needs %s (%s)',
                case when c.lines = 1 then 'line' else format('record of lines %s-%s',
                    c.line_number, c.line_number + c.lines - 1) end,
                cardinality(_record_fields(c.fields, c.raw_line, p_delimiter)), v_separated,
                p_table, cardinality(v_cols), array_to_string(v_cols, ', ')
            ) end,
            _constraint_for(p_table, o.field, o.reason_code), rc.sqlstate, v_source, o.record_id
        -- only the rejected lines are joined to their raw text: joined first,
        -- every line of the file paid for the lookups (1.4 s a million). The
        -- DISTINCT ON (idx is unique anyway) tells the planner so: it then
        -- hashes the rejected rows and reads the lines past them, where it
        -- built a hash table of every line of the file (0.2 s more a million)
        from (
            select distinct on (r.idx) r.idx, r.reason_code, r.field, r.id as record_id
            from pg_temp.judged_rows as r where r.reason_code is not null
        ) as o
        join reason_codes as rc on rc.reason_code = o.reason_code
        join pg_temp.csv_lines as c on c.line_number = o.idx
        order by o.idx  -- error ids follow the lines' order
        returning reason_code
    )
    select
        (select count(*) from logged),
        (select count(*) from logged where reason_code <> 'malformed_line')
    into v_rejected, v_wellformed;
    if v_skip_log_triggers then
        perform set_config('session_replication_role', v_role, true);
    end if;
    perform _empty_judged_rows();  -- used: they belong to no later batch
    v_wellformed := v_wellformed + v_inserted;

    if v_wellformed = 0 and v_records > 0 then
        raise exception 'file % is not a CSV of %: no record has the % % (%) it needs',
            p_file, p_table, cardinality(v_cols), v_separated, array_to_string(v_cols, ', ')
            using errcode = 'DAT04';
    end if;

    if v_suspended is not null then
        perform _reinstate(v_suspended);
    end if;
    v_resolved := _finish_batch(
        v_batch_id, p_table, v_inserted + v_rejected, v_inserted, v_rejected, v_resolving_ids
    );
    insert into migrated_files (table_name, sha256, file_name, batch_id)
    values (p_table, p_sha256, p_file, v_batch_id);

    p_lines := coalesce(p_lines, v_record_lines + p_header::integer);
    return jsonb_build_object(
        'status', 'migrated', 'table', p_table, 'file', p_file, 'batch_id', v_batch_id,
        'lines', p_lines, 'header', p_header::integer,
        'blank', p_lines - p_header::integer - v_record_lines,
        'records', v_records, 'submitted', v_inserted + v_rejected,
        'inserted', v_inserted, 'rejected', v_rejected, 'resolved', v_resolved,
        'by_reason', _batch_reasons(v_batch_id)
    );
end;
$$;

create or replace function retry_csv_rejections(p_table text, p_delimiter text default ',')
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
set work_mem = '256MB'
as $$
-- Promise: judges again, as one new batch (source 'retry'), the records of
-- pg_temp.csv_pieces, each the raw line of an open CSV rejection whose
-- error_id is its line number there. A record that loads now resolves its
-- rejection (by its id, as any insert does); one that does not is logged
-- again, at its file and line, with today's reason, and the earlier
-- rejection is closed as judged again. Returns a summary.
declare
    v_batch_id bigint;
    v_retried bigint;
    v_inserted bigint;
    v_rejected bigint;
    v_inserted_ids integer[];
begin
    perform _require_table(p_table);
    insert into ingest_batches (table_name, source, mode)
    values (p_table, 'retry', 'per_row')
    returning batch_id into v_batch_id;
    perform _prepare_judged_rows();
    v_retried := judge_csv_lines(p_table, p_delimiter);

    with outcome as materialized (
        select o.*, e.source_file, e.line_number, e.raw_line, e.source
        from _insert_rows(p_table, v_batch_id) as o
        join ingest_errors as e on e.error_id = o.idx
    ),
    logged as (
        insert into ingest_errors (
            batch_id, table_name, source_file, line_number, raw_line, reason_code, field,
            message, constraint_name, sqlstate, source, record_id
        )
        select
            v_batch_id, p_table, o.source_file, o.line_number, o.raw_line, o.reason_code,
            o.field, _rejection_message(p_table, o.field, o.reason_code, rc.description),
            _constraint_for(p_table, o.field, o.reason_code), rc.sqlstate, o.source, o.record_id
        from outcome as o
        join reason_codes as rc on rc.reason_code = o.reason_code
        returning 1
    ),
    superseded as (
        update ingest_errors as e
        set closed_at = now(), closed_by = 'retry',
            close_note = format('judged again in batch %s: %s', v_batch_id, l.reason_code)
        from (
            select x.error_id, o.reason_code
            from ingest_errors as x
            join outcome as o on o.idx = x.error_id
            where o.reason_code is not null and x.resolved_at is null and x.closed_at is null
            order by x.error_id for no key update of x  -- the one order for rows (procedures/003)
        ) as l
        where e.error_id = l.error_id
        returning 1
    )
    select
        (select count(*) from outcome where reason_code is null),
        (select count(*) from logged),
        array(select o.record_id from outcome as o where o.reason_code is null)
    into v_inserted, v_rejected, v_inserted_ids;

    return jsonb_build_object(
        'batch_id', v_batch_id, 'table', p_table, 'retried', v_retried,
        'inserted', v_inserted, 'rejected', v_rejected,
        'resolved', _finish_batch(
            v_batch_id, p_table, v_retried, v_inserted, v_rejected, v_inserted_ids
        ),
        'by_reason', _batch_reasons(v_batch_id)
    );
end;
$$;

revoke all on function csv_begin(text) from public;
revoke all on function _table_alone(regclass) from public;
revoke all on function _require_csv_staging() from public;
revoke all on function _expand_csv_pieces() from public;
revoke all on function judge_csv_lines(text, text, integer[]) from public;
revoke all on function already_migrated(text, text, text) from public;
revoke all on function ingest_csv_lines(text, text, text, text, bigint, boolean) from public;
-- POST /tables/{table}/csv loads a file as the API role
grant execute on function csv_begin(text) to dataarch_api;
grant execute on function judge_csv_lines(text, text, integer[]) to dataarch_api;
grant execute on function already_migrated(text, text, text) to dataarch_api;
grant execute on function ingest_csv_lines(text, text, text, text, bigint, boolean) to dataarch_api;
revoke all on function retry_csv_rejections(text, text) from public;
