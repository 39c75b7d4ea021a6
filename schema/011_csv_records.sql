-- CSV records are read by dataarch/csvrecords.py (RFC 4180, byte-exact) and
-- reach the database as pieces; the line splitters the database used, and
-- the loader functions' earlier signatures, go.

drop function if exists ingest_csv_lines(text, text, text);
drop function if exists judge_csv_lines(text, bigint, bigint);
drop function if exists _csv_line_fields(bigint, text);
drop function if exists _split_csv_line(text);
drop function if exists _split_quoted_csv_line(text);

update reason_codes
set
    description = 'record does not fit this table: the wrong number of fields, quotes'
    || ' out of place, or bytes not valid in the file''s encoding'
where reason_code = 'malformed_line';
