-- The core marks repeated ids in pg_temp.judged_rows itself
-- (_gather_verdicts), and _insert_rows learned whether its caller holds the
-- table alone: the functions it used before are retired.

drop function if exists _classify_rows(text);
drop function if exists _insert_employees();
drop function if exists _lock_employee_references();
drop function if exists _insert_rows(text);
