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

create or replace function _id_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- An id is a JSON integer, or a string of digits (CSV fields are strings),
    -- from 1 to 2147483647. 1.0 is an integer; 1.5, "12a", true and {} are not.
    select case
        when v is null then 'missing_field'
        when jsonb_typeof(v) = 'null' then 'null_value'
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
    end
$$;

create or replace function _name_problem(v jsonb)
returns text
language sql immutable parallel safe
as $$
    -- A name is a string, not blank once trimmed, at most 200 characters.
    -- U+FFFF stands in for a NUL that ingest_batch_json had to replace.
    select case
        when v is null then 'missing_field'
        when jsonb_typeof(v) = 'null' then 'null_value'
        when jsonb_typeof(v) <> 'string' then 'invalid_type'
        when strpos(v ->> 0, U&'\FFFF') > 0 then 'invalid_character'
        when btrim(v ->> 0, E' \t\r\n') = '' then 'blank_string'
        when char_length(btrim(v ->> 0, E' \t\r\n')) > 200 then 'too_long'
    end
$$;

create or replace function _datetime_pattern()
returns text
language sql immutable parallel safe
as $$
    -- ISO 8601 / RFC 3339 date-time with a mandatory zone; groups: year,
    -- month, day, hour, minute, second, offset hour, offset minute.
    select '^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})'
        || '(?::([0-9]{2})(?:\.[0-9]{1,6})?)?'
        || '(?:[Zz]|[+-]([0-9]{2})(?::?([0-9]{2}))?)$'
$$;

create or replace function _datetime_problem(v jsonb, parts text[])
returns text
language sql immutable parallel safe
as $$
    -- `parts` is regexp_match(v ->> 0, _datetime_pattern()), computed once by
    -- the caller. Ranges are checked here so that the later ::timestamptz
    -- cast cannot fail: no 2021-02-30, no 24:00, no leap second.
    select case
        when v is null then 'missing_field'
        when jsonb_typeof(v) = 'null' then 'null_value'
        when jsonb_typeof(v) <> 'string' then 'invalid_type'
        when parts is null then 'invalid_datetime'
        when parts[1]::int < 1
            or parts[2]::int not between 1 and 12
            or parts[3]::int < 1
            or parts[3]::int > case
                when parts[2]::int = 2
                    then 28 + (parts[1]::int % 4 = 0
                        and (parts[1]::int % 100 <> 0 or parts[1]::int % 400 = 0))::int
                when parts[2]::int in (4, 6, 9, 11) then 30
                else 31
            end
            or parts[4]::int > 23
            or parts[5]::int > 59
            or coalesce(parts[6]::int, 0) > 59
            or coalesce(parts[7]::int, 0) > 14
            or coalesce(parts[8]::int, 0) > 59
            then 'invalid_datetime'
    end
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
