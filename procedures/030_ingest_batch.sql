-- ingest_batch: the one entry point for new rows, from HTTP and from psql.
--
-- Whole-batch refusals raise one of these SQLSTATEs (app.py maps them to HTTP):
--   DAT01  unknown table                                   -> 404
--   DAT02  payload is not {"table": ..., "rows": [...]}    -> 400
--   DAT03  rows holds 0 or more than 1000 elements         -> 422
--   DAT05  an Idempotency-Key reused for another request   -> 422

create or replace function ingest_batch(
    p_table text,
    p_rows jsonb,
    p_mode text default 'per_row',
    p_source text default 'psql',
    p_request_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: in one transaction, inserts the valid rows of p_rows into p_table
-- (each recording the batch and its index: lineage) and writes every other
-- row, with its reason, to ingest_errors; records the batch in
-- ingest_batches (with the HTTP request's id, when given); resolves the open rejections of earlier batches
-- whose ids it inserted; returns {batch_id, table, mode, submitted,
-- inserted, rejected, resolved, rejections: [{index, reason_code, field,
-- message}]} with inserted + rejected = submitted (ingest_batches checks it).
-- A wait past lock_timeout names who holds the tables it writes or reads,
-- whether it waited for a table or for a row (a rejection being closed, an
-- id a concurrent batch has not committed); nothing is written.
declare
    v_message text;
    v_submitted integer;
    v_batch_id bigint;
    v_inserted integer;
    v_rejected integer;
    v_rejections jsonb;
    v_inserted_ids integer[];
    v_resolved integer;
begin
    perform _require_table(p_table);
    if jsonb_typeof(p_rows) is distinct from 'array' then
        raise exception 'rows must be a JSON array of row objects, not %',
            coalesce(jsonb_typeof(p_rows), 'nothing')
            using errcode = 'DAT02';
    end if;
    v_submitted := jsonb_array_length(p_rows);
    if v_submitted not between 1 and 1000 then
        raise exception 'a batch holds 1 to 1000 rows; this one has %', v_submitted
            using errcode = 'DAT03',
                hint = 'Split the rows into batches of at most 1000.';
    end if;
    if p_mode is null or p_mode not in ('per_row', 'atomic') then
        raise exception 'mode must be "per_row" or "atomic", not "%"', p_mode
            using errcode = 'DAT02';
    end if;

    -- the table it writes, before it reads any other (procedures/003)
    perform _lock_tables(jsonb_build_object(p_table, 'row exclusive'));
    insert into ingest_batches (table_name, source, mode, submitted, request_id)
    values (p_table, p_source, p_mode, v_submitted, p_request_id)
    returning batch_id into v_batch_id;

    with outcome as materialized (
        select * from _ingest_rows(p_table, p_rows, p_mode = 'atomic', v_batch_id)
    ),
    logged as (
        insert into ingest_errors (
            batch_id, table_name, row_index, raw_row, reason_code, field,
            message, constraint_name, sqlstate, source, record_id
        )
        select
            v_batch_id, p_table, o.idx, p_rows -> o.idx, o.reason_code, o.field,
            _rejection_message(p_table, o.field, o.reason_code, rc.description),
            _constraint_for(p_table, o.field, o.reason_code), rc.sqlstate, p_source, o.record_id
        from outcome as o
        join reason_codes as rc on rc.reason_code = o.reason_code
        order by o.idx  -- error ids follow the rows' order
        returning row_index, reason_code, field, message
    )
    select
        (select count(*) from outcome where reason_code is null),
        (select count(*) from logged),
        (
            select coalesce(jsonb_agg(jsonb_build_object(
                'index', l.row_index, 'reason_code', l.reason_code,
                'field', l.field, 'message', l.message
            ) order by l.row_index), '[]'::jsonb)
            from logged as l
        ),
        array(select o.record_id from outcome as o where o.reason_code is null)
    into v_inserted, v_rejected, v_rejections, v_inserted_ids;
    v_resolved := _finish_batch(
        v_batch_id, p_table, v_submitted, v_inserted, v_rejected, v_inserted_ids
    );

    return jsonb_build_object(
        'batch_id', v_batch_id,
        'table', p_table,
        'mode', p_mode,
        'submitted', v_submitted,
        'inserted', v_inserted,
        'rejected', v_rejected,
        'resolved', v_resolved,
        'rejections', v_rejections
    );
exception when lock_not_available then
    get stacked diagnostics v_message = message_text;
    if _names_the_holder(v_message) then
        raise;  -- named already (_lock_tables)
    end if;
    perform _table_busy(p_table,
        array[p_table, 'ingest_batches', 'ingest_errors', 'hire_counts']
        || _referenced_tables(p_table),
        'Nothing was written: send the batch again when it has finished.');
end;
$$;

create or replace function ingest_batch(payload jsonb)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the psql-friendly form of ingest_batch(table, rows, mode, source):
-- payload is {"table": "...", "rows": [...], "mode": "per_row"|"atomic"}.
begin
    if jsonb_typeof(payload) is distinct from 'object' or not payload ? 'table' then
        raise exception 'payload must be a JSON object {"table": ..., "rows": [...]}'
            using errcode = 'DAT02';
    end if;
    if (payload - array['table', 'rows', 'mode']) <> '{}'::jsonb then
        raise exception 'payload has keys other than table, rows and mode: %',
            (select string_agg(k, ', ') from jsonb_object_keys(
                payload - array['table', 'rows', 'mode']) as k)
            using errcode = 'DAT02';
    end if;
    return ingest_batch(
        payload ->> 'table',
        payload -> 'rows',
        coalesce(payload ->> 'mode', 'per_row'),
        'psql'
    );
end;
$$;

create or replace function ingest_batch_json(
    p_table text,
    p_body text,
    p_mode text default 'per_row',
    p_source text default 'api',
    p_idempotency_key text default null,
    p_request_id text default null
)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: ingest_batch for a request body exactly as received (JSON text).
-- Refuses (DAT02) a body that is not an array, and (22P02) text that is not
-- JSON; a row that is not an object or a record (an array) is rejected as
-- any bad row is. jsonb cannot hold \u0000, so each unescaped \u0000
-- becomes \uFFFF first and the rows holding it are rejected as
-- invalid_character instead of the whole batch failing. With an idempotency
-- key, a repeat of the same request within 24 hours returns the first
-- response, marked "replayed": true, and writes nothing; the key with a different request is refused
-- (DAT05). After 24 hours a key is forgotten and may be used again. A
-- body without a number in exponent notation is judged the fast way
-- (_code_json_rows). A wait past lock_timeout for a key a concurrent
-- request has not committed names who holds it.
declare
    v_message text;
    v_rows jsonb;
    v_hash text;
    v_seen record;
    v_result jsonb;
begin
    if strpos(p_body, '\u0000') > 0 then
        p_body := regexp_replace(p_body, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\uFFFF', 'g');
    end if;
    v_rows := p_body::jsonb;
    perform set_config(
        'dataarch.exponents', case when p_body ~ '[0-9][eE]' then 'maybe' else 'none' end, true
    );
    if p_idempotency_key is not null then
        -- Keys live 24 hours. Each keyed request removes up to 100 expired
        -- ones, skipping rows another request is removing: no waiting.
        delete from idempotency_keys as k
        where k.ctid in (
            select x.ctid from idempotency_keys as x
            where x.created_at < now() - interval '24 hours'
            order by x.created_at
            limit 100
            for update skip locked
        );
        delete from idempotency_keys as k  -- this key, if expired: it is new again
        where k.idempotency_key = p_idempotency_key
            and k.created_at < now() - interval '24 hours';
        v_hash := encode(sha256(convert_to(
            concat_ws(E'\n', p_table, p_mode, p_body), 'UTF8')), 'hex');
        insert into idempotency_keys (idempotency_key, request_sha256)
        values (p_idempotency_key, v_hash)
        on conflict (idempotency_key) do nothing;
        if not found then  -- seen before; a concurrent first use has committed by now
            select k.request_sha256, k.response into v_seen
            from idempotency_keys as k where k.idempotency_key = p_idempotency_key;
            if v_seen.request_sha256 <> v_hash then
                raise exception 'Idempotency-Key "%" was already used for a different request',
                    p_idempotency_key
                    using errcode = 'DAT05',
                        hint = 'Use a new key for a new batch.';
            end if;
            return v_seen.response || '{"replayed": true}';
        end if;
    end if;

    v_result := ingest_batch(p_table, v_rows, p_mode, p_source, p_request_id);
    if p_idempotency_key is not null then
        update idempotency_keys
        set response = v_result, batch_id = (v_result ->> 'batch_id')::bigint
        where idempotency_key = p_idempotency_key;
    end if;
    return v_result;
exception when lock_not_available then
    get stacked diagnostics v_message = message_text;
    if _names_the_holder(v_message) then
        raise;  -- named already (ingest_batch)
    end if;
    perform _table_busy(p_table, array['idempotency_keys'],
        'Nothing was written: send the batch again when it has finished.');
end;
$$;

create or replace function ready_to_ingest()
returns boolean
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: true when this database can run the ingest core: a sample row is
-- staged and judged as a batch would be (PL/pgSQL, the field rules, the
-- session's temporary tables); nothing is written but those. What a
-- readiness probe calls: SELECT 1 answers even where no batch could. A
-- table another operation holds (a restore) is no sign of a broken
-- database: judging then waits for nobody and the answer is true.
begin
    -- a row of the first table, every field missing: each rule runs
    perform _prepare_judged_rows();  -- here: the table outlives a judging undone
    perform set_config('lock_timeout', '50ms', true);
    begin
        perform _judge_json_rows((_data_tables())[1], '[{}]');
    exception when lock_not_available then
        null;  -- busy, not broken
    end;
    perform _empty_judged_rows();
    return true;
end;
$$;

revoke all on function ready_to_ingest() from public;
grant execute on function ready_to_ingest() to dataarch_api;
revoke all on function ingest_batch(text, jsonb, text, text, text) from public;
revoke all on function ingest_batch_json(text, text, text, text, text, text) from public;
grant execute on function ingest_batch_json(text, text, text, text, text, text) to dataarch_api;
revoke all on function ingest_batch(jsonb) from public;
grant execute on function ingest_batch(text, jsonb, text, text, text) to dataarch_api;
grant execute on function ingest_batch(jsonb) to dataarch_api;
