-- Reads for the HTTP service, as JSON the service passes through untouched.

create or replace function table_row(p_table text, p_id integer)
returns jsonb
language sql stable
set search_path = pg_catalog, public
as $$
    -- One row of p_table by its id, or NULL when there is none.
    select case p_table
        when 'departments' then (
            select to_jsonb(d) from departments as d where d.department_id = p_id
        )
        when 'jobs' then (select to_jsonb(j) from jobs as j where j.job_id = p_id)
        when 'employees' then (
            select to_jsonb(e) from employees as e where e.employee_id = p_id
        )
    end
$$;

create or replace function table_rejections(
    p_table text, p_batch_id bigint, p_limit integer, p_offset integer
)
returns jsonb
language sql stable
set search_path = pg_catalog, public
as $$
    -- A page of p_table's logged rejections, newest first, optionally of one
    -- batch: {"total", "limit", "offset", "items": [...]}.
    select jsonb_build_object(
        'total', (
            select count(*) from ingest_errors as e
            where e.table_name = p_table and (p_batch_id is null or e.batch_id = p_batch_id)
        ),
        'limit', p_limit,
        'offset', p_offset,
        'items', coalesce((
            select jsonb_agg(to_jsonb(page) order by page.error_id desc)
            from (
                select
                    e.error_id, e.batch_id, e.row_index, e.source_file, e.line_number,
                    e.raw_row, e.raw_line, e.reason_code, e.field, e.message,
                    e.constraint_name, e.sqlstate, e.source, e.received_at
                from ingest_errors as e
                where e.table_name = p_table
                    and (p_batch_id is null or e.batch_id = p_batch_id)
                order by e.error_id desc
                limit p_limit offset p_offset
            ) as page
        ), '[]'::jsonb)
    )
$$;

grant execute on function table_row(text, integer) to dataarch_api;
grant execute on function table_rejections(text, bigint, integer, integer) to dataarch_api;
