-- Reads for the HTTP service, as JSON the service passes through untouched.

create or replace function table_row(p_table text, p_id integer)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: one row of p_table by its id (its data dictionary's columns;
-- row_lineage says where it came from), or NULL when there is none.
declare
    v_id_column constant text := (_require_table(p_table))[1];  -- DAT01 before any lock
    v_row jsonb;
begin
    perform _lock_tables_to_read(array[p_table]);
    execute format(
        'select to_jsonb(t) - %L - %L from %I as t where t.%I = $1',
        'batch_id', 'batch_position', p_table, v_id_column
    ) into v_row using p_id;
    return v_row;
end;
$$;

create or replace function _rejection_status(p_error ingest_errors)
returns text
language sql immutable parallel safe
as $$
    -- open until a later batch inserted its id (resolved) or someone closed it
    select case
        when p_error.resolved_at is not null then 'resolved'
        when p_error.closed_at is not null then 'closed'
        else 'open'
    end
$$;

create or replace function _matching_rejections(
    p_table text, p_batch_id bigint, p_status text, p_reason text, p_since timestamptz
)
returns setof ingest_errors
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- p_table's rejections that pass every filter given (NULL: no filter)
    select e.*
    from ingest_errors as e
    where e.table_name = p_table
        and (p_batch_id is null or e.batch_id = p_batch_id)
        and (p_status is null or _rejection_status(e) = p_status)
        and (p_reason is null or e.reason_code = p_reason)
        and (p_since is null or e.received_at >= p_since)
$$;

create or replace function table_rejections(
    p_table text,
    p_batch_id bigint default null,
    p_status text default null,
    p_reason text default null,
    p_since timestamptz default null,
    p_limit integer default 100,
    p_offset integer default 0
)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: a page of p_table's logged rejections, newest first, filtered
-- by batch, status (open, resolved, closed), reason and time received:
-- {"total", "limit", "offset", "items": [...]}.
begin
    perform _lock_tables_to_read(array['ingest_errors']);
    return (
        with matching as (
            select m.*, _rejection_status(m) as status
            from _matching_rejections(p_table, p_batch_id, p_status, p_reason, p_since) as m
        )

        select jsonb_build_object(
            'total', (select count(*) from matching),
            'limit', p_limit,
            'offset', p_offset,
            'items', coalesce((
                select jsonb_agg(to_jsonb(page) order by page.error_id desc)
                from (
                    select
                        m.error_id, m.batch_id, m.row_index, m.source_file, m.line_number,
                        m.raw_row, m.raw_line, m.reason_code, m.field, m.message,
                        m.constraint_name, m.sqlstate, m.source, m.received_at, m.record_id,
                        m.status, m.resolved_by_batch, m.resolved_at, m.closed_at, m.closed_by,
                        m.close_note
                    from matching as m
                    order by m.error_id desc
                    limit p_limit offset p_offset
                ) as page
            ), '[]'::jsonb)
        )
    );
end;
$$;

create or replace function close_rejections(
    p_error_ids bigint[], p_note text, p_by text default null
)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the open rejections among p_error_ids are closed, now, by p_by
-- (default: the session's user) with p_note, which must say something
-- (DAT02); returns {"closed": [ids], "not_open": [ids], "unknown": [ids]}.
-- A wait past lock_timeout (for the table, or for a rejection a batch is
-- resolving) says who holds ingest_errors; nothing is closed.
declare
    v_closed bigint[];
    v_message text;
begin
    if coalesce(btrim(p_note), '') = '' then
        raise exception 'closing a rejection needs a note saying why'
            using errcode = 'DAT02', hint = 'e.g. --note "sent again by hand in ticket 42"';
    end if;
    perform _lock_tables('{"ingest_errors": "row exclusive"}');
    with closed as (
        update ingest_errors as e
        set closed_at = now(), closed_by = coalesce(p_by, session_user), close_note = p_note
        from (
            select x.error_id from ingest_errors as x
            where x.error_id = any(p_error_ids) and x.resolved_at is null and x.closed_at is null
            order by x.error_id for no key update  -- the one order for rows (procedures/003)
        ) as l
        where e.error_id = l.error_id
        returning e.error_id
    )
    select coalesce(array_agg(error_id order by error_id), '{}') into v_closed from closed;
    return jsonb_build_object(
        'closed', to_jsonb(v_closed),
        'not_open', coalesce((
            select jsonb_agg(e.error_id order by e.error_id) from ingest_errors as e
            where e.error_id = any(p_error_ids) and not e.error_id = any(v_closed)
        ), '[]'),
        'unknown', coalesce((
            select jsonb_agg(i order by i) from unnest(p_error_ids) as i
            where not exists (select from ingest_errors as e where e.error_id = i)
        ), '[]')
    );
exception when lock_not_available then
    get stacked diagnostics v_message = message_text;
    if _names_the_holder(v_message) then
        raise;  -- named already (_lock_tables)
    end if;
    perform _table_busy('ingest_errors', array['ingest_errors'],
        'Nothing was closed: close them again when it has finished.');
end;
$$;

create or replace function rejected_records(
    p_table text,
    p_batch_id bigint default null,
    p_status text default null,
    p_reason text default null,
    p_since timestamptz default null
)
returns table (
    error_id bigint, batch_id bigint, source text, place bigint,
    raw_line text, raw_row jsonb, reason_code text, field text, message text
)
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_table's rejections, oldest first, as reject files need them:
-- the record as it came (raw_line for a CSV record, raw_row for an API
-- row) and where it was (line number, or index in its batch).
begin
    perform _lock_tables_to_read(array['ingest_errors']);
    return query
    select
        m.error_id, m.batch_id, m.source, coalesce(m.line_number, m.row_index),
        m.raw_line, m.raw_row, m.reason_code, m.field, m.message
    from _matching_rejections(p_table, p_batch_id, p_status, p_reason, p_since) as m
    order by m.error_id;
end;
$$;

grant execute on function table_row(text, integer) to dataarch_api;
grant execute on function _matching_rejections(
    text, bigint, text, text, timestamptz
) to dataarch_api;
grant execute on function table_rejections(
    text, bigint, text, text, timestamptz, integer, integer
) to dataarch_api;
grant execute on function rejected_records(text, bigint, text, text, timestamptz) to dataarch_api;
revoke all on function close_rejections(bigint[], text, text) from public;
grant execute on function close_rejections(bigint[], text, text) to dataarch_api;
