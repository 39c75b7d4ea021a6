-- Avro's binary encoding, in SQL: a backup's rows leave the database as the
-- bytes of their Avro records, so no Python touches a row (backup/dump.py
-- frames and compresses the blocks). Each encoder is an immutable SQL
-- expression with no SET clause, so the planner inlines it into the
-- backup's query: no call overhead, and the whole record is one expression
-- over the row (measured at 965 000 employees: 2.3 s of server time to
-- encode them all, where Python took ~3 us a row on top of the COPY).
-- tests/test_avro_encoding.py compares every encoder, byte for byte, with
-- fastavro on generated values; the Avro type each column gets is chosen in
-- backup/columns.py.

create or replace function _avro_long_wide(p_zigzag bigint)
returns bytea
language plpgsql immutable strict parallel safe
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the varint of a zigzag value read as unsigned 64 bits, whatever
-- its size: avro_long's way for values of 9 or 10 bytes (beyond +-2^55),
-- a loop no caller reaches for an id or a date-time of this era.
declare
    v_bytes bytea := '';
    v_rest bigint := p_zigzag;
    v_low integer;
begin
    loop
        v_low := (v_rest & 127)::integer;
        -- a logical shift: the arithmetic one keeps a negative value's sign
        v_rest := (v_rest >> 7) & ((1::bigint << 57) - 1);
        if v_rest = 0 then
            return v_bytes || set_byte('\x00'::bytea, 0, v_low);
        end if;
        v_bytes := v_bytes || set_byte('\x00'::bytea, 0, v_low | 128);
    end loop;
end;
$$;

create or replace function _code_avro_varint(p_zigzag text, p_half text)
returns text
language sql immutable
as $$
    -- The CASE that writes the zigzag value p_zigzag (an expression) as a
    -- varint of 1 to 8 bytes, given p_half, the value's magnitude (p_zigzag
    -- without its lowest bit, never negative): the branch for k bytes tests
    -- p_half < 2^(7k - 1) and builds the k bytes, lowest 7 bits
    -- first and the high bit set on all but the last, as one integer whose
    -- last k big-endian bytes int8send gives them. Wider values go to
    -- _avro_long_wide.
    select 'case '
        || string_agg(format(
            'when %1$s < %2$s then substring(int8send(%3$s) from %4$s)',
            p_half, 1::bigint << (7 * k - 1), b.bytes, 9 - k
        ), ' ' order by k)
        || format(' else public._avro_long_wide(%s) end', p_zigzag)
    from generate_series(1, 8) as k
    cross join lateral (
        select string_agg(format(
            '((%s%s%s) << %s)',
            case when i > 0 then format('(%s >> %s)', p_zigzag, 7 * i) else p_zigzag end,
            case when i < k - 1 then ' & 127' else '' end,
            case when i < k - 1 then ' | 128' else '' end,
            8 * (k - 1 - i)
        ), ' | ' order by i) as bytes
        from generate_series(0, k - 1) as i
    ) as b
$$;

do $generate$
begin
    -- avro_long: zigzag (0, -1, 1, -2 -> 0, 1, 2, 3) then the varint. The
    -- zigzag value is written per sign (v << 1, or its complement) and the
    -- branches test v (or its complement) directly: with no common
    -- subexpressions in PostgreSQL, each use of a shared zigzag expression
    -- would compute it again (measured: 192 ms against 140 for 965 000 ids).
    execute format($f$
        create or replace function avro_long(v bigint)
        returns bytea
        language sql immutable parallel safe
        as $body$
            select case when v >= 0 then %s else %s end
        $body$
    $f$, _code_avro_varint('(v << 1)', 'v'), _code_avro_varint('((v << 1) # -1)', '(v # -1)'));
    comment on function avro_long(bigint) is
    'Generated (procedures/055): v as Avro writes an int or a long, a zigzag varint. NULL for NULL.';
end;
$generate$;

create or replace function avro_bytes(b bytea)
returns bytea
language sql immutable parallel safe
as $$
    -- Avro's string or bytes: the length as a long, then the bytes (a
    -- string's are its UTF-8, which the caller converts to). NULL for NULL.
    select public.avro_long(length(b)) || b
$$;

create or replace function avro_boolean(b boolean)
returns bytea
language sql immutable parallel safe
as $$
    -- Avro's boolean: one byte, 1 or 0. NULL for NULL.
    select case when b then '\x01'::bytea when not b then '\x00'::bytea end
$$;

create or replace function avro_optional(p_encoded bytea)
returns bytea
language sql immutable parallel safe
as $$
    -- A value of the union ["null", T], given T's encoding of it: the
    -- branch's index as a long (0 null, 1 the value), then the value.
    -- p_encoded is named once: an argument named twice is not inlined when
    -- it is an expression as costly as an encoder.
    select coalesce('\x02'::bytea || p_encoded, '\x00'::bytea)
$$;

revoke all on function _code_avro_varint(text, text) from public;
