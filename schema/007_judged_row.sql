-- A row's verdict: the first broken rule (reason_code, field), or the typed
-- values to insert. _judge_rows and _classify_rows (procedures/020) return
-- it, and pg_temp.judged_rows keeps it. Created in procedures/ before
-- migrations existed, hence the guard: databases of that release have it.

do $$
begin
    if to_regtype('judged_row') is null then
        create type judged_row as (
            idx bigint,  -- the row's index in its batch, or its CSV line number
            reason_code text,
            field text,
            id integer,
            name text,
            hired timestamptz,
            department_id integer,
            job_id integer
        );
    end if;
end;
$$;
