-- Staging and judging are generated from the data dictionary
-- (procedures/004_row_code.sql): a verdict is a row of pg_temp.judged_rows,
-- whose columns are the dictionary's, no longer the judged_row type with a
-- slot for each of the first release's columns. What took or returned the
-- old shapes goes; procedures/ makes the new ones. A session's judged_rows
-- of the old type goes with the type, and is made again, in the new shape,
-- the next time the session stages rows.

drop function if exists _judge_rows(text);
drop function if exists _recheck_references(boolean);
drop function if exists _rejection_message(text, text, text);
drop type if exists judged_row cascade;

-- A batch's table is one of the dictionary's, not one of a list written
-- here: a table a migration adds takes batches at once.
alter table ingest_batches drop constraint if exists ingest_batches_table_name_known;
alter table ingest_batches drop constraint if exists ingest_batches_table_name_fkey;
alter table ingest_batches add constraint ingest_batches_table_name_fkey
foreign key (table_name) references dictionary_tables (table_name);
