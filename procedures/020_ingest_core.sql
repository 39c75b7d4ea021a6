-- The validation core shared by the HTTP/psql path (ingest_batch) and the CSV
-- migration (ingest_csv_lines). Each judges its rows into the session's
-- pg_temp.judged_rows by one statement that reads every field as (text,
-- JSON type) and applies the rules (_judge_json_rows, _judge_csv_lines:
-- those, and the tables' shapes, are generated from the data dictionary,
-- procedures/004_row_code.sql); _gather_verdicts adds what needs the whole
-- batch (repeated ids), and _insert_rows inserts the valid ones. Set-based:
-- a handful of statements per batch, no per-row loop or EXCEPTION block, and
-- no detour through jsonb for a CSV line.
--
-- A large CSV file is judged by several sessions at once
-- (judge_csv_lines), and the others' verdicts are copied into
-- pg_temp.judged_rows of the transaction that inserts, so a batch is judged
-- once whichever way it came.

create or replace function _json_text(p_value jsonb)
returns text
language sql immutable parallel safe
as $$
    -- A JSON field's text, as ->> gives it, but a number's in a few
    -- characters whatever its exponent: ->> writes 1e131071 out in full
    -- (131 072 digits; 1000 such rows cost seconds). A number no id could
    -- be stands for itself by the verdict it gets: a fraction is '0.5'
    -- (not an integer), an integer beyond 15 digits '1e15' (out of range);
    -- other rules refuse any number as invalid_type, whatever its text.
    select case
        when jsonb_typeof(p_value) <> 'number' then p_value #>> '{}'
        when p_value::numeric <> trunc(p_value::numeric) then
            case when scale(p_value::numeric) <= 15 then p_value #>> '{}' else '0.5' end
        when abs(p_value::numeric) < 1e15 then trunc(p_value::numeric)::text
        else '1e15'
    end
$$;

create or replace function _gather_verdicts(p_table text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: pg_temp.judged_rows holds the verdict on every row of the batch
-- (judged by this session, or a large CSV file's by several). A valid row
-- whose id an earlier valid row of the batch carries is duplicate_in_batch:
-- the first occurrence wins. One sort of the valid rows by id and position
-- puts each repeat right after the row it repeats, and only the repeats are
-- updated: a million lines 0.55 s, where grouping the ids in a hash table
-- and joining every row back to its group took 0.9 (psql, 1 000 repeats).
-- The repeats are found by their row's address (ctid, one fetch each):
-- joined back by idx, every row of the batch was read again to find them
-- (a million lines 0.71 -> 0.58 s by EXPLAIN ANALYZE, 1 000 repeats).
-- Called once a batch.
begin
    update pg_temp.judged_rows as r
    set reason_code = 'duplicate_in_batch', field = (_table_columns(p_table))[1]
    where r.ctid = any(array(
        select s.ctid
        from (
            select j.ctid, j.id, lag(j.id) over (order by j.id, j.idx) as previous_id
            from pg_temp.judged_rows as j
            where j.reason_code is null
        ) as s
        where s.id = s.previous_id
    ));
end;
$$;

create or replace function _insert_judged(p_table text, p_alone boolean, p_batch_id bigint)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the valid rows of pg_temp.judged_rows are in p_table, each with
-- its lineage (batch p_batch_id, its position in the batch), and a row
-- whose id was taken, by a committed row or by a concurrent batch that
-- committed first, is duplicate_id instead. Rows go in in id order, so two
-- batches with overlapping ids never deadlock; p_alone, in the order they
-- were judged (nothing else writes the table; sorting a million rows cost
-- ~0.13 s of a 9.2 s migration, six rounds, one reversed). The ids
-- committed rows hold are found before the insert (by one index scan of
-- them all; p_alone: this transaction holds p_table exclusively, an
-- initial load, by one pass over it), so the insert needs no ON CONFLICT,
-- whose speculative insertion costs a second WAL record a row (2 s of a
-- million rows; 1.4 ms of a 43 ms 1000-row batch). Only a batch that
-- commits one of the ids between the probe and the insert makes the insert
-- fail; it then runs again with ON CONFLICT. Citus keeps ON CONFLICT: a
-- probe there is a distributed query of its own. p_alone: the hire counts
-- are added by one aggregate (070).
declare
    v_cols constant text[] := _table_columns(p_table);
    v_insert_alone constant text := format(
        'insert into %I as t (%s, batch_id, batch_position) select %s, %s, r.idx'
        ' from pg_temp.judged_rows as r where r.reason_code is null',
        p_table,
        array_to_string(v_cols, ', '),
        (select string_agg(format('r.%I', c), ', ') from unnest(v_cols) as c),
        coalesce(p_batch_id::text, 'null')
    );
    v_insert constant text := v_insert_alone || ' order by r.id';
    v_taken constant text := format(
        'update pg_temp.judged_rows as r set reason_code = %L, field = %L'
        ' where r.reason_code is null and r.id %%s',
        'duplicate_id', v_cols[1]
    );
    -- what ON CONFLICT found taken is a duplicate_id; NOT IN stays one
    -- hashed lookup a row (as a join, the planner's guess of a few rows
    -- chose two sorts: 0.5 s a million)
    v_insert_or_skip constant text := format(
        'with ins as (%s on conflict (%I) do nothing returning t.%2$I as id) '
        || format(v_taken, 'not in (select ins.id from ins)'),
        v_insert, v_cols[1]
    );
    -- = ANY of an array: one index scan for all the ids, whatever the
    -- statistics say. Joined to judged_rows instead, an emptied table's
    -- statistics made the planner scan the index once a row, each scan
    -- walking the whole array (58 ms of a 70 ms batch): the ids found are
    -- marked by a second statement, over the (usually empty) array.
    v_probe constant text := format(
        'select array(select t.%1$I from %2$I as t where t.%1$I = any(array('
        'select j.id from pg_temp.judged_rows as j where j.reason_code is null)))',
        v_cols[1], p_table
    );
    v_taken_ids integer[];
begin
    if p_alone then
        execute format(v_taken, format('in (select t.%I from %I as t)', v_cols[1], p_table));
        if _counts_hires(p_table::regclass) then
            perform _insert_counting_hires(v_insert_alone);
        else
            execute v_insert_alone;
        end if;
    elsif _citus_kind(p_table::regclass) is null then
        execute v_probe into v_taken_ids;
        if cardinality(v_taken_ids) > 0 then
            execute format(v_taken, '= any($1)') using v_taken_ids;
        end if;
        begin
            execute v_insert;
        exception when unique_violation then
            execute v_insert_or_skip;  -- a batch committed one of the ids meanwhile
        end;
    else
        execute v_insert_or_skip;
    end if;
end;
$$;

create or replace function _insert_valid_rows(
    p_table text, p_batch_id bigint, p_alone boolean default false
)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: inserts every valid row of pg_temp.judged_rows into p_table,
-- and leaves in judged_rows every row's final verdict: reason_code NULL
-- for an inserted row, else its reason. Each row
-- records p_batch_id and its position in the batch (lineage). Never an
-- orphan: references were checked when the rows were judged; where
-- _skips_row_triggers allows (procedures/005_engine.sql) and the batch has
-- enough valid rows for it to pay (_skipping_row_triggers_pays), they are
-- locked and checked again and the foreign keys' per-row triggers are
-- skipped. Elsewhere the triggers check each row, and a parent deleted between the
-- judging and the insert (23503) has the references checked again, up to
-- three tries in all. p_alone: the caller holds p_table exclusively and
-- its referenced tables in SHARE mode (an initial load): references are
-- checked again, without row locks, and the foreign keys' triggers skipped
-- where _skips_row_triggers allows (else the caller suspended the keys).
declare
    v_references constant boolean := _has_references(p_table);
    -- the foreign keys' per-row triggers skipped, the references checked
    -- once more by one statement instead
    v_skip_triggers boolean := v_references and _skips_row_triggers(p_table::regclass);
    -- and the referenced rows locked by it (not needed when p_alone)
    v_lock_references boolean;
    v_role constant text := current_setting('session_replication_role');
    v_attempt integer := 1;
begin
    perform _require_table(p_table);
    perform _gather_verdicts(p_table);
    if v_skip_triggers and not p_alone then  -- a small batch lets them run
        v_skip_triggers := _skipping_row_triggers_pays((
            select count(*) from pg_temp.judged_rows as r where r.reason_code is null
        ));
    end if;
    v_lock_references := v_skip_triggers and not p_alone;
    loop
        begin
            if v_references and (p_alone or v_lock_references or v_attempt > 1) then
                perform _recheck_references(p_table, v_lock_references);
            end if;
            if v_skip_triggers then
                perform set_config('session_replication_role', 'replica', true);
            end if;
            perform _insert_judged(p_table, p_alone, p_batch_id);
            if v_skip_triggers then
                perform set_config('session_replication_role', v_role, true);
            end if;
            exit;
        exception when foreign_key_violation then
            if v_attempt = 3 then
                raise;
            end if;
            v_attempt := v_attempt + 1;
        end;
    end loop;
end;
$$;

create or replace function _insert_rows(
    p_table text, p_batch_id bigint, p_alone boolean default false
)
returns table (idx bigint, reason_code text, field text, record_id integer)
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: as _insert_valid_rows, then returns every row exactly once:
-- reason_code NULL for an inserted row, else its reason; record_id is the
-- row's id, when it has a usable one; and empties judged_rows.
begin
    perform _insert_valid_rows(p_table, p_batch_id, p_alone);
    return query select r.idx, r.reason_code, r.field, r.id from pg_temp.judged_rows as r;
    perform _empty_judged_rows();  -- used: they belong to no later batch
end;
$$;

create or replace function _resolve_rejections(p_table text, p_batch_id bigint, p_ids integer[])
returns integer
language plpgsql
set search_path = pg_catalog, public, pg_temp
-- The open rejections are found through their partial index, one probe an
-- id (the index condition record_id = ANY), whatever the statistics say.
-- Planned on a table the statistics thought nearly empty (just after a
-- TRUNCATE, before autovacuum came), the cached plan compared every open
-- rejection with every id: 600 open rejections made it 25 ms of a 40 ms
-- batch, for as long as the session lasted (auto_explain, 2026-12-03).
set enable_seqscan = off
as $$
-- Promise: every open rejection of p_table from a batch other than
-- p_batch_id whose row carried one of p_ids (the ids p_batch_id inserted)
-- is resolved by p_batch_id, now. Returns how many.
declare
    v_lowest integer;
    v_highest integer;
    v_resolved integer;
begin
    -- Usually no other batch's open rejection lies between the batch's
    -- lowest and highest id: one range scan of the partial index says so,
    -- where probing it once an id cost ~1 ms of a 1000-row batch. The scan
    -- reads past at most the batch's own open rejections.
    select min(i), max(i) into v_lowest, v_highest from unnest(p_ids) as i;
    if not exists (
        select from ingest_errors as x
        where x.table_name = p_table and x.resolved_at is null and x.closed_at is null
            and x.batch_id <> p_batch_id
            and x.record_id between v_lowest and v_highest
    ) then
        return 0;
    end if;
    update ingest_errors as e
    set resolved_by_batch = p_batch_id, resolved_at = now()
    from (
        select x.error_id from ingest_errors as x
        where x.table_name = p_table and x.resolved_at is null and x.closed_at is null
            and x.batch_id <> p_batch_id
            and x.record_id = any(p_ids)
        order by x.error_id for no key update  -- the one order for rows (procedures/003)
    ) as l
    where e.error_id = l.error_id;
    get diagnostics v_resolved = row_count;
    return v_resolved;
end;
$$;

create or replace function _finish_batch(
    p_batch_id bigint, p_table text, p_submitted bigint, p_inserted bigint, p_rejected bigint,
    p_resolving_ids integer[]
)
returns integer
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the ledger's tail, one for every batch that loads rows (a JSON
-- batch, a CSV file, a retry): the open rejections its rows resolve are
-- resolved by it, and it is finished with its counts, which the count
-- invariant (inserted + rejected = submitted, a CHECK) holds to. Returns
-- how many rejections it resolved. p_resolving_ids: the ids it inserted,
-- or at least each of them that an open rejection of p_table carries (a
-- file of a million rows passes only those: planned with a million
-- constants, the resolving UPDATE took 0.28 s).
declare
    v_resolved integer := _resolve_rejections(p_table, p_batch_id, p_resolving_ids);
begin
    update ingest_batches
    set submitted = p_submitted, inserted = p_inserted,
        rejected = p_rejected, finished_at = clock_timestamp()
    where batch_id = p_batch_id;
    return v_resolved;
end;
$$;

create or replace function _ingest_rows(
    p_table text, p_rows jsonb, p_atomic boolean, p_batch_id bigint
)
returns table (idx integer, reason_code text, field text, record_id integer)
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: as _insert_rows, for the JSON array p_rows of batch p_batch_id;
-- with p_atomic, either every row is inserted or none is, and then every
-- otherwise valid row is atomic_batch_rejected.
declare
    v_outcome jsonb;  -- [[idx, reason_code, field, record_id], ...]
begin
    perform _judge_json_rows(p_table, p_rows);
    if not p_atomic then
        return query
        select r.idx::integer, r.reason_code, r.field, r.record_id
        from _insert_rows(p_table, p_batch_id) as r;
        return;
    end if;
    begin  -- one subtransaction for the whole batch, only in atomic mode
        select jsonb_agg(jsonb_build_array(r.idx, r.reason_code, r.field, r.record_id))
        into v_outcome
        from _insert_rows(p_table, p_batch_id) as r;
        if exists (select from jsonb_array_elements(v_outcome) as o where o ->> 1 is not null) then
            raise exception 'atomic batch rejected' using errcode = 'DAT00';
        end if;
    exception when sqlstate 'DAT00' then
        -- the inserts are undone; v_outcome keeps its value, and the rows
        -- that went in are now atomic_batch_rejected
        v_outcome := (
            select jsonb_agg(case when o ->> 1 is null
                then jsonb_set(o, '{1}', '"atomic_batch_rejected"') else o end)
            from jsonb_array_elements(v_outcome) as o
        );
    end;
    return query
    select (o ->> 0)::integer, o ->> 1, o ->> 2, (o ->> 3)::integer
    from jsonb_array_elements(v_outcome) as o
    order by 1;
end;
$$;

revoke all on function _json_text(jsonb) from public;
revoke all on function _gather_verdicts(text) from public;
revoke all on function _insert_judged(text, boolean, bigint) from public;
revoke all on function _insert_valid_rows(text, bigint, boolean) from public;
revoke all on function _insert_rows(text, bigint, boolean) from public;
revoke all on function _ingest_rows(text, jsonb, boolean, bigint) from public;
revoke all on function _resolve_rejections(text, bigint, integer[]) from public;
revoke all on function _finish_batch(bigint, text, bigint, bigint, bigint, integer[])
from public;
