-- A row is staged and judged by one statement (procedures/004): the rules
-- read its fields straight from the JSON batch or the CSV record, and
-- pg_temp.incoming_rows, which held them in between, is gone. The functions
-- that filled and read it go; procedures/ makes the ones that replace them
-- (_prepare_judged_rows, _judge_json_rows, _judge_csv_lines). A session's
-- incoming_rows, made before this, is a temporary table nothing reads, and
-- goes with the session.

drop function if exists _prepare_incoming_rows(boolean);
drop function if exists _stage_json_rows(text, jsonb);
drop function if exists _stage_csv_lines(text, integer, integer);
drop function if exists _judge_rows(text);
drop function if exists _code_incoming_columns();
drop function if exists _code_prepare_staging();
drop function if exists _code_stage_json();
drop function if exists _code_stage_csv();
drop function if exists _code_judge(text);
drop function if exists _staging_width();
