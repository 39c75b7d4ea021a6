-- The data dictionary's field rules, one function per kind of field. Each
-- returns NULL when the JSON value is acceptable, else the reason code.
-- They are plain SQL expressions so the planner inlines them into the
-- set-based classification in _classify_rows (no per-row function calls).

create or replace function _require_table(p_table text)
returns text[]
language plpgsql immutable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_table's columns, or DAT01 (-> HTTP 404) naming the tables.
begin
    if _table_columns(p_table) is null then
        raise exception 'unknown table "%"', p_table
            using errcode = 'DAT01',
                hint = 'The tables are ' || array_to_string(_data_tables(), ', ') || '.';
    end if;
    return _table_columns(p_table);
end;
$$;

-- The rules take a field as (s, t): its text and its JSON type ('string',
-- 'number', 'boolean', 'null', 'object', 'array'; NULL when absent). A CSV
-- field is a 'string', or absent when empty.

create or replace function _presence_problem(t text)
returns text
language sql immutable parallel safe
as $$
    -- Every field is mandatory: absent, or JSON null, is the first problem.
    select case
        when t is null then 'missing_field'
        when t = 'null' then 'null_value'
    end
$$;

create or replace function _id_problem(s text, t text)
returns text
language sql immutable parallel safe
as $$
    -- An id is a JSON integer, or a string of digits (CSV fields are strings),
    -- from 1 to 2147483647. 1.0 is an integer; 1.5, "12a", true and {} are not.
    -- Plain digits, the common case, are told apart by ltrim, not a regex
    -- (a regex match costs ~1.2 us a row); up to nine of them cannot
    -- overflow an integer, so they are cast at once (three ids: 1.8 -> 1.2
    -- us a row, against the checks below). Counted in bytes: only digits
    -- pass the ltrim, one byte each, and a UTF-8 string's length in
    -- characters is a walk through it.
    select coalesce(_presence_problem(t), case
        when t in ('string', 'number') and octet_length(s) between 1 and 9
            and ltrim(s, '0123456789') = ''
            then case when s::integer = 0 then 'out_of_range' end
        when t = 'number' then
            case
                when s::numeric <> trunc(s::numeric) then 'invalid_type'
                when s::numeric not between 1 and 2147483647 then 'out_of_range'
            end
        when t <> 'string' then 'invalid_type'
        when s <> '' and ltrim(s, '0123456789') = '' then
            case when ltrim(s, '0') = '' or length(ltrim(s, '0')) > 10
                or ltrim(s, '0')::bigint > 2147483647 then 'out_of_range' end
        when btrim(s) !~ '^[+-]?[0-9]+$' then 'invalid_type'
        when ltrim(btrim(s), '+-0') = '' or btrim(s) like '-%'
            or length(ltrim(btrim(s), '+-0')) > 10
            or ltrim(btrim(s), '+-0')::bigint > 2147483647
            then 'out_of_range'
    end)
$$;

create or replace function _name_problem(s text, t text)
returns text
language sql immutable parallel safe
as $$
    -- A name is a string, not blank once trimmed, at most 200 characters.
    -- U+FFFF stands in for a NUL that ingest_batch_json had to replace.
    -- Trimmed only when it may matter: a name is blank only if it is empty
    -- or starts with a blank, and too long only if it has more than 200
    -- bytes (a character is one to four); trimming twice and counting a
    -- UTF-8 name's characters cost ~0.23 us a row (a million names 0.41 ->
    -- 0.18 s, psql). tests/test_properties.py holds it to the plain rule.
    select coalesce(_presence_problem(t), case
        when t <> 'string' then 'invalid_type'
        when strpos(s, U&'\FFFF') > 0 then 'invalid_character'
        when (s = '' or ascii(s) in (9, 10, 13, 32)) and btrim(s, E' \t\r\n') = ''
            then 'blank_string'
        when octet_length(s) > 200 and char_length(btrim(s, E' \t\r\n')) > 200
            then 'too_long'
    end)
$$;

create or replace function _datetime_pattern()
returns text
language sql immutable parallel safe
as $$
    -- ISO 8601 / RFC 3339 date-time with a mandatory zone, each field in its
    -- range: month 01-12, day 01-31, hour 00-23, minute and second 00-59 (no
    -- leap second), zone Z or an offset within +-14:59. Only whether the day
    -- exists in its month is left to _day_exists. Matched as a boolean: a
    -- capturing match costs ten times as much (measured).
    select '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])'
        || '[Tt ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)?'
        || '([Zz]|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)$'
$$;

create or replace function _two_digit_texts(p_from integer, p_to integer)
returns text[]
language sql immutable parallel safe
as $$
    -- '00' to '99' from p_from to p_to: the texts a two-digit field in that
    -- range may have. A slice of a constant, which the planner folds at
    -- once: built by a query, the arrays cost 1.3 ms each time the judging
    -- statement was planned, which a batch does each time
    select ((
        '{00,01,02,03,04,05,06,07,08,09,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24'
        || ',25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49'
        || ',50,51,52,53,54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74'
        || ',75,76,77,78,79,80,81,82,83,84,85,86,87,88,89,90,91,92,93,94,95,96,97,98,99}'
    )::text[])[p_from + 1:p_to + 1]
$$;

-- Generated, so that it is a constant the planner folds (as
-- _two_digit_texts): every month and day a date may have.
do $generate$
begin
    execute format($f$
        create or replace function _month_day_texts()
        returns text[]
        language sql immutable parallel safe
        as $body$
            -- Generated by procedures/010_field_rules.sql: the 366 texts
            -- 'MM-DD' of a leap year, '01-01' to '12-31'.
            select %L::text[]
        $body$
    $f$, (
        select array_agg(to_char(d, 'MM-DD') order by d)::text
        from generate_series(date '2000-01-01', date '2000-12-31', interval '1 day') as d
    ));
end
$generate$;

create or replace function _leap_year(y integer)
returns boolean
language sql immutable parallel safe
as $$
    -- Gregorian: every fourth year, but not a century unless a fourth one.
    select y % 4 = 0 and (y % 100 <> 0 or y % 400 = 0)
$$;

create or replace function _day_exists(s text)
returns boolean
language sql immutable parallel safe
as $$
    -- s matched _datetime_pattern: year at 1-4, month at 6-7, day at 9-10.
    -- True when that day exists (no 2021-02-30, no year 0000), so the
    -- ::timestamptz cast will succeed. Days up to 28 exist in every month:
    -- that text comparison settles nine rows in ten without a cast.
    select case
        when left(s, 4) = '0000' then false
        when substr(s, 9, 2) <= '28' collate "C" then true
        else substr(s, 9, 2)::int <= case
            when substr(s, 6, 2) = '02' then 28 + _leap_year(left(s, 4)::int)::int
            when substr(s, 6, 2) in ('04', '06', '09', '11') then 30
            else 31
        end
    end
$$;

create or replace function _utc_seconds_of_day(s text)
returns numeric
language sql immutable parallel safe
as $$
    -- s matched _datetime_pattern: the seconds from its local midnight to
    -- the instant in UTC (below 0: the day before in UTC; 86400 or more:
    -- the day after). Arithmetic on the text, not a cast: a cast to
    -- timestamptz is only STABLE, and an immutable rule holding it would
    -- stop being inlined (a function call a row, twice the batch's time).
    select
        f[1]::numeric * 3600 + f[2]::numeric * 60 + coalesce(f[3]::numeric, 0)
        - case when f[4] is null then 0
            else (f[4] || '1')::numeric * (f[5]::numeric * 3600 + coalesce(f[6], '0')::numeric * 60)
        end
    from regexp_match(
        s, '^.{11}([0-9]{2}):([0-9]{2})(?::([0-9]{2}(?:[.][0-9]+)?))?(?:[Zz]|([+-])([0-9]{2}):?([0-9]{2})?)$'
    ) as f
$$;

create or replace function _any_datetime_problem(s text)
returns text
language sql immutable parallel safe
as $$
    -- The statement of the date-time rule, for a string of any shape: in
    -- _datetime_pattern's shape, on a real day, in the years 0001 to 9999 in
    -- UTC (employees_hiring_date_in_range). Only 0001-01-01 and 9999-12-31
    -- can leave that range through their offset, so only they pay for
    -- _utc_seconds_of_day.
    select case
        when s !~ _datetime_pattern() then 'invalid_datetime'
        when not _day_exists(s) then 'invalid_datetime'
        when left(s, 10) = '0001-01-01' and _utc_seconds_of_day(s) < 0
            then 'datetime_out_of_range'
        when left(s, 10) = '9999-12-31' and _utc_seconds_of_day(s) >= 86400
            then 'datetime_out_of_range'
    end
$$;

create or replace function _usual_datetime_problem(s text)
returns text
language sql immutable parallel safe
as $$
    -- _any_datetime_problem's verdict on a string of the usual shape, s LIKE
    -- '____-__-__T__:__:__Z' (2021-11-07T02:48:42Z), without a regular
    -- expression: each field is looked up among the texts its range allows
    -- (constant arrays: a hash probe each), the month and the day together,
    -- so a day its month lacks is refused there; only the 29th of February
    -- asks for its year. In UTC every instant of the years 0001-9999 is in
    -- range. Each field taken out is a walk through the UTF-8 text from its
    -- start, hence as few as may be. tests/test_properties.py holds the two
    -- equal.
    select case
        when not (
            left(s, 2) = any(_two_digit_texts(0, 99))
            and substr(s, 3, 2) = any(_two_digit_texts(0, 99))
            and substr(s, 6, 5) = any(_month_day_texts())
            and substr(s, 12, 2) = any(_two_digit_texts(0, 23))
            and substr(s, 15, 2) = any(_two_digit_texts(0, 59))
            and substr(s, 18, 2) = any(_two_digit_texts(0, 59))
        ) then 'invalid_datetime'
        when left(s, 4) = '0000' then 'invalid_datetime'
        when substr(s, 6, 5) = '02-29' and not _leap_year(left(s, 4)::int)
            then 'invalid_datetime'
    end
$$;

create or replace function _datetime_problem(s text, t text)
returns text
language sql immutable parallel safe
as $$
    -- A hiring date is a string that _any_datetime_problem finds nothing
    -- wrong with; the usual shape is judged by _usual_datetime_problem (a
    -- million such dates 0.92 s, psql, against 1.21 when its fields were
    -- taken out one by one and its day checked apart; the pattern alone
    -- costs 1.7).
    select coalesce(_presence_problem(t), case
        when t <> 'string' then 'invalid_type'
        when s like '____-__-__T__:__:__Z' then _usual_datetime_problem(s)
        else _any_datetime_problem(s)
    end)
$$;

create or replace function _rejection_message(
    p_table text, p_field text, p_reason text, p_description text
)
returns text
language sql immutable parallel safe
as $$
    -- A sentence a user can act on: the field, then what is wrong with it;
    -- for a field of the wrong JSON type, what its rule (_column_rule,
    -- procedures/004) asks for.
    select case
        when p_reason = 'invalid_type' and p_field is null
            then 'row must be a JSON object keyed by column name, or an array of the fields'
                || ' in column order'
        when p_reason = 'invalid_type' then p_field || case _column_rule(p_table, p_field)
            when 'id' then ' must be an integer'
            when 'datetime' then ' must be a string holding an ISO 8601 date-time'
            else ' must be a string'
        end
        when p_field is null then p_description
        else p_field || ' ' || p_description
    end
$$;
