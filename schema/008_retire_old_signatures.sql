-- Function signatures of releases before migrations existed. procedures/
-- used to drop them on every install; a database still holding one of them
-- loses it here, once. A signature retired from now on is dropped by a new
-- migration like this one (CREATE OR REPLACE cannot change a signature or a
-- return type).

-- the field rules took jsonb before they took (text, JSON type)
drop function if exists _presence_problem(jsonb);
drop function if exists _id_problem(jsonb);
drop function if exists _name_problem(jsonb);
drop function if exists _datetime_problem(jsonb);
drop function if exists _datetime_problem(jsonb, text[]);
drop function if exists _datetime_in_range(text);

-- foreign keys and indexes came back through functions of their own
drop function if exists _reinstate_foreign_keys(regclass, jsonb);
drop function if exists _reinstate_indexes(jsonb);
drop function if exists _suspend_indexes(regclass);

-- the core took its rows as jsonb before pg_temp.incoming_rows existed
drop function if exists _ingest_rows(text, jsonb, boolean);
drop function if exists _insert_rows(text, jsonb);
drop function if exists _classify_rows(text, jsonb);
drop function if exists _prepare_incoming_rows();

-- before the Idempotency-Key
drop function if exists ingest_batch_json(text, text, text, text);

-- before _hire_counts_after_change upserted directly
drop function if exists _apply_hire_deltas(jsonb);
