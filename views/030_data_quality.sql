-- The data-quality report: what was rejected, from where, when, and how much
-- of it is still open. One JSON document, read by reports/ (data-quality.html)
-- and usable from psql: select jsonb_pretty(data_quality());

create or replace function data_quality(p_oldest integer default 10)
returns jsonb
language plpgsql volatile  -- reads after its wait: _lock_tables_to_read
set search_path = pg_catalog, public, pg_temp
set timezone = 'UTC'
as $$
-- Promise: counts by reason, source and day, open against resolved over
-- time, the p_oldest oldest open rejections and the batches that loaded
-- most.
begin
    perform _lock_tables_to_read(array['ingest_batches', 'ingest_errors']);
    return (
        with errors as (
            select e.*, _rejection_status(e) as status from ingest_errors as e
        ),

        -- a rejection opens on the day it arrives and ends when resolved or closed
        per_day as (
            select
                e.day,
                sum(e.rejected) as rejected,
                sum(e.resolved) as resolved,
                sum(e.closed) as closed
            from (
                select received_at::date as day, 1 as rejected, 0 as resolved, 0 as closed
                from errors
                union all
                select resolved_at::date, 0, 1, 0 from errors where resolved_at is not null
                union all
                select closed_at::date, 0, 0, 1 from errors where closed_at is not null
            ) as e
            group by e.day
        )

        select jsonb_build_object(
            'totals', (
                select jsonb_build_object(
                    'rejected', count(*),
                    'open', count(*) filter (where status = 'open'),
                    'resolved', count(*) filter (where status = 'resolved'),
                    'closed', count(*) filter (where status = 'closed'),
                    -- loads only: a restore re-inserts what a backup held, a revert inserts nothing
                    'batches', (
                        select count(*) from ingest_batches
                        where source not like 'restore:%' and source <> 'revert'
                    ),
                    'inserted', (
                        select coalesce(sum(inserted), 0) from ingest_batches
                        where source not like 'restore:%' and reverted_by is null
                    )
                )
                from errors
            ),
            'by_reason', coalesce((
                select jsonb_agg(r order by r.rejected desc, r.reason_code)
                from (
                    select
                        reason_code,
                        count(*) as rejected,
                        count(*) filter (where status = 'open') as open
                    from errors group by reason_code
                ) as r
            ), '[]'),
            -- every table of the data dictionary, those with nothing rejected too
            'by_table', (
                select jsonb_agg(r order by r.n)
                from (
                    select
                        t.table_name,
                        t.n,
                        count(e.error_id) as rejected,
                        count(e.error_id) filter (where e.status = 'open') as open
                    from unnest(_data_tables()) with ordinality as t (table_name, n)
                    left join errors as e on e.table_name = t.table_name
                    group by t.table_name, t.n
                ) as r
            ),
            'by_source', coalesce((
                select jsonb_agg(s order by s.rejected desc, s.source)
                from (
                    select
                        source,
                        count(*) as rejected,
                        count(*) filter (where status = 'open') as open
                    from errors group by source
                ) as s
            ), '[]'),
            'by_day', coalesce((
                select jsonb_agg(x order by x.day)
                from (
                    select
                        day,
                        rejected,
                        resolved,
                        closed,
                        sum(rejected - resolved - closed) over (order by day) as open_at_end
                    from per_day
                ) as x
            ), '[]'),
            'oldest_open', coalesce((
                select jsonb_agg(o order by o.error_id)
                from (
                    select
                        error_id, table_name, batch_id, source, received_at, reason_code,
                        message
                    from errors where status = 'open'
                    order by error_id limit p_oldest
                ) as o
            ), '[]'),
            'largest_batches', coalesce((
                select jsonb_agg(b order by b.inserted desc, b.batch_id)
                from (
                    select batch_id, table_name, source, inserted, rejected, finished_at, reverted_by
                    from ingest_batches
                    where finished_at is not null and source not like 'restore:%' and source <> 'revert'
                    order by inserted desc, batch_id limit p_oldest
                ) as b
            ), '[]')
        )
    );
end;
$$;

grant execute on function data_quality(integer) to dataarch_api;
