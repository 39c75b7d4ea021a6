-- A session that helps judge a large CSV file is given the numbers of the
-- pieces it judges (dataarch/migrate.py shares them out), instead of
-- judging those numbered its own modulo the number of sessions: the rule
-- that shares them lives in one place, and the session that also expands
-- every piece can be given fewer. procedures/ makes the new forms.

drop function if exists judge_csv_lines(text, text, integer, integer);
drop function if exists _judge_csv_lines(text, text, integer, integer);
