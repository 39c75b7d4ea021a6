-- The data dictionary's field rules, one function per kind of field. Each
-- returns NULL when the JSON value is acceptable, else the reason code.
-- They are plain SQL expressions so the planner inlines them into the
-- set-based classification in _classify_rows (no per-row function calls).

create or replace function _table_columns(p_table text)
returns text[]
language sql immutable parallel safe
as $$
    -- Column order matters: the id is first, the name second, and a CSV
    -- line's fields come in this order.
    select case p_table
        when 'departments' then array['department_id', 'department_name']
        when 'jobs' then array['job_id', 'job_name']
        when 'employees' then array[
            'employee_id', 'employee_name', 'hiring_date', 'department_id', 'job_id'
        ]
    end
$$;

create or replace function _require_table(p_table text)
returns text[]
language plpgsql immutable
set search_path = pg_catalog, public
as $$
-- Promise: p_table's columns, or DAT01 (-> HTTP 404) naming the tables.
begin
    if _table_columns(p_table) is null then
        raise exception 'unknown table "%"', p_table
            using errcode = 'DAT01',
                hint = 'The tables are departments, jobs and employees.';
    end if;
    return _table_columns(p_table);
end;
$$;

create or replace function _presence_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- Every field is mandatory: absent, or JSON null, is the first problem.
    select case
        when v is null then 'missing_field'
        when jsonb_typeof(v) = 'null' then 'null_value'
    end
$$;

create or replace function _id_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- An id is a JSON integer, or a string of digits (CSV fields are strings),
    -- from 1 to 2147483647. 1.0 is an integer; 1.5, "12a", true and {} are not.
    select coalesce(_presence_problem(v), case
        when jsonb_typeof(v) = 'number' then
            case
                when v::numeric <> trunc(v::numeric) then 'invalid_type'
                when v::numeric not between 1 and 2147483647 then 'out_of_range'
            end
        when jsonb_typeof(v) <> 'string' then 'invalid_type'
        when btrim(v ->> 0) !~ '^[+-]?[0-9]+$' then 'invalid_type'
        when ltrim(btrim(v ->> 0), '+-0') = '' or btrim(v ->> 0) like '-%'
            or length(ltrim(btrim(v ->> 0), '+-0')) > 10
            or ltrim(btrim(v ->> 0), '+-0')::bigint > 2147483647
            then 'out_of_range'
    end)
$$;

create or replace function _name_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- A name is a string, not blank once trimmed, at most 200 characters.
    -- U+FFFF stands in for a NUL that ingest_batch_json had to replace.
    select coalesce(_presence_problem(v), case
        when jsonb_typeof(v) <> 'string' then 'invalid_type'
        when strpos(v ->> 0, U&'\FFFF') > 0 then 'invalid_character'
        when btrim(v ->> 0, E' \t\r\n') = '' then 'blank_string'
        when char_length(btrim(v ->> 0, E' \t\r\n')) > 200 then 'too_long'
    end)
$$;

create or replace function _datetime_pattern()
returns text
language sql immutable parallel safe
as $$
    -- ISO 8601 / RFC 3339 date-time with a mandatory zone. Matched as a
    -- boolean: a capturing match costs ten times as much (measured).
    select '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}'
        || '(:[0-9]{2}([.][0-9]{1,6})?)?([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$'
$$;

-- The old form took the capture groups of _datetime_pattern as an argument.
drop function if exists _datetime_problem(jsonb, text[]);

create or replace function _datetime_in_range(s text)
returns boolean
language sql immutable parallel safe
as $$
    -- s matched _datetime_pattern, so every field below is digits at a known
    -- place: year 1-4, month 6-7, day 9-10, hour 12-13, minute 15-16, then
    -- optional :seconds, and the zone's sign (if any) after position 16.
    -- True when the ::timestamptz cast will succeed and means what it says:
    -- no 2021-02-30, no 24:00, no leap second, an offset within +-14:59.
    -- A CASE, not AND/OR: only CASE fixes the order, and so guards a cast.
    select case
        when substr(s, 1, 4)::int < 1 then false
        when substr(s, 6, 2)::int not between 1 and 12 then false
        when substr(s, 9, 2)::int not between 1 and case
            when substr(s, 6, 2)::int = 2
                then 28 + (substr(s, 1, 4)::int % 4 = 0
                    and (substr(s, 1, 4)::int % 100 <> 0
                        or substr(s, 1, 4)::int % 400 = 0))::int
            when substr(s, 6, 2)::int in (4, 6, 9, 11) then 30
            else 31
        end then false
        when substr(s, 12, 2)::int > 23 or substr(s, 15, 2)::int > 59 then false
        when case when substr(s, 17, 1) = ':'
            then substr(s, 18, 2)::int > 59 else false end then false
        else case
            when greatest(strpos(substr(s, 17), '+'), strpos(substr(s, 17), '-')) = 0
                then true  -- Z
            else substr(
                s, 17 + greatest(strpos(substr(s, 17), '+'), strpos(substr(s, 17), '-')), 2
            )::int <= 14
            and coalesce(nullif(substr(replace(substr(
                s, 19 + greatest(strpos(substr(s, 17), '+'), strpos(substr(s, 17), '-'))
            ), ':', ''), 1, 2), '')::int, 0) <= 59
        end
    end
$$;

create or replace function _datetime_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- A hiring date is a string in _datetime_pattern's shape, in range.
    select coalesce(_presence_problem(v), case
        when jsonb_typeof(v) <> 'string' then 'invalid_type'
        when (v ->> 0) !~ _datetime_pattern() then 'invalid_datetime'
        when not _datetime_in_range(v ->> 0) then 'invalid_datetime'
    end)
$$;

create or replace function _constraint_for(p_table text, p_field text, p_reason text)
returns text
language sql immutable parallel safe
as $$
    -- The named constraint that would refuse a row rejected for p_reason
    -- (tests check every name exists). NOT NULL has no name before PG 18.
    select case
        when p_reason = 'out_of_range' and p_field = (_table_columns(p_table))[1]
            then p_table || '_id_positive'
        when p_reason = 'blank_string' then p_table || '_name_not_blank'
        when p_reason = 'too_long' then p_table || '_name_max_length'
        when p_reason = 'duplicate_id' then p_table || '_pkey'
        when p_reason = 'unknown_department' then 'employees_department_id_fkey'
        when p_reason = 'unknown_job' then 'employees_job_id_fkey'
    end
$$;

create or replace function _rejection_message(p_field text, p_reason text, p_description text)
returns text
language sql immutable parallel safe
as $$
    -- A sentence a user can act on: the field, then what is wrong with it.
    select case
        when p_reason = 'invalid_type' and p_field is null
            then 'row must be a JSON object keyed by column name'
        when p_reason = 'invalid_type' and p_field like '%\_id'
            then p_field || ' must be an integer'
        when p_reason = 'invalid_type' and p_field = 'hiring_date'
            then p_field || ' must be a string holding an ISO 8601 date-time'
        when p_reason = 'invalid_type' then p_field || ' must be a string'
        when p_field is null then p_description
        else p_field || ' ' || p_description
    end
$$;
