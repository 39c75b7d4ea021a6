-- Backup and restore support. A backup reads its tables in one snapshot and
-- records each table's row count and checksum, in backup_catalog and in the
-- file's header (backup_record). A restore loads each file into a
-- session-private staging table (restore_begin), then replaces the tables'
-- rows in one transaction, re-checks every constraint and reference and
-- compares count and checksum before the caller commits. Callers need no
-- write privilege on the tables themselves.
--
-- Backups and restores of one table exclude each other through an advisory
-- lock (backup_lock_key): a backup holds it shared, in its session, from
-- before its snapshot to its end; restore_begin takes it exclusive or
-- refuses at once (DAT08). So a restore never waits on a backup (whose
-- worker sessions would queue behind the restore's lock: a deadlock no
-- server can see), and a backup never reads a table a restore truncated
-- after the backup's snapshot (TRUNCATE is not MVCC-safe).
--
-- A restore takes its locks in the one order (procedures/003), the tables
-- that reference a restored table first, and leaves the bookkeeping true to
-- the rows it restored (_after_restore): what says "these rows are in the
-- table" (a migrated file, a stored answer, a resolved rejection) is
-- forgotten or reopened when they are not. A dry run changes nothing at
-- all: no sequence moves, no batch is recorded.
--
-- Raises DAT06 when the restored rows are not the rows the file's header
-- recorded, DAT08 when the table is busy, DAT09 when restore_finish is
-- offered a state no backup of this database recorded.

create or replace function _backup_tables()
returns text[]
language sql immutable parallel safe
as $$
    -- Every table a full backup set holds, in the order a restore loads them
    -- (referenced tables first): the data, then the ingest log, so that a
    -- recovery keeps the logged rejections, the migrated files and the
    -- answers to repeated requests.
    select _data_tables()
        || array['ingest_batches', 'ingest_errors', 'migrated_files', 'idempotency_keys']
$$;

create or replace function _require_backup_table(p_table text)
returns regclass
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: p_table as a regclass when a backup may hold it, else DAT01.
begin
    if p_table is null or not p_table = any(_backup_tables()) then
        raise exception 'no table "%" is backed up', p_table
            using errcode = 'DAT01',
                hint = 'The tables are ' || array_to_string(_backup_tables(), ', ') || '.';
    end if;
    return p_table::regclass;
end;
$$;

create or replace function backup_lock_key(p_table text)
returns bigint
language sql immutable parallel safe
as $$
    -- The advisory lock a backup of p_table holds shared, and a restore of
    -- it takes exclusive.
    select hashtextextended('dataarch.backup:' || p_table, 0)
$$;

create or replace function backup_lock_shared(p_table text)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the session holds p_table's backup lock shared (until it lets
-- it go), after waiting at most lock_timeout for a restore of the table
-- to finish; when the wait runs out, 55P03 says which restore holds it.
begin
    perform pg_advisory_lock_shared(backup_lock_key(p_table));
exception when lock_not_available then
    raise exception '% is busy: % holds it', p_table,
        lock_holders(p_table::regclass, backup_lock_key(p_table))
        using errcode = '55P03', hint = 'Try again when the restore has finished.';
end;
$$;

create or replace function _unsigned_checksum(p_sum numeric)
returns text
language sql immutable parallel safe
as $$
    -- A sum of signed 64-bit hashes, as the unsigned 64-bit number people
    -- read. Files of earlier releases may record the signed form; it is
    -- the same number modulo 2^64.
    select mod(mod(coalesce(p_sum, 0), 18446744073709551616) + 18446744073709551616,
        18446744073709551616)::text
$$;

create or replace function _checksum_input(p_columns jsonb)
returns text
language plpgsql immutable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the text a row's checksum is taken of, as SQL over the alias t:
-- the whole row (t::text), or with p_columns (a JSON array of names) the
-- row of those columns only: what a backup file of an earlier release
-- holds, when the table has since gained columns.
begin
    if p_columns is null or jsonb_typeof(p_columns) <> 'array' then
        return 't::text';
    end if;
    return format('row(%s)::text', (
        select string_agg(format('t.%I', c), ', ' order by n)
        from jsonb_array_elements_text(p_columns) with ordinality as x (c, n)
    ));
end;
$$;

create or replace function relation_checksum(p_relation regclass, p_columns jsonb default null)
returns table (row_count bigint, checksum text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 3
as $$
-- Promise: the row count and an order-independent 64-bit checksum of the
-- rows' text (of p_columns only, when given), stable across sessions (zone
-- and styles are pinned here), of any table or staging table shaped like one.
begin
    return query execute format(
        'select count(*), _unsigned_checksum(sum(hashtextextended(%s, 0)::numeric))'
        ' from %s as t', _checksum_input(p_columns), p_relation
    );
end;
$$;

create or replace function table_checksum(p_table text)
returns table (row_count bigint, checksum text)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- relation_checksum of one of the tables a backup holds.
    select * from relation_checksum(_require_backup_table(p_table))
$$;

create or replace function _keyed_checksums(p_relation regclass, p_columns jsonb default null)
returns table (row_count bigint, checksum text, keyed_checksum text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 3
as $$
-- Promise: relation_checksum's count and checksum, and the same checksum
-- under backup_key's secret seed, in one pass over the rows.
begin
    return query execute format(
        'select count(*),'
        ' _unsigned_checksum(sum(hashtextextended(r, 0)::numeric)),'
        ' _unsigned_checksum(sum(hashtextextended(r, %s)::numeric))'
        ' from (select %s as r from %s as t offset 0) as x',
        (select k.seed from backup_key as k), _checksum_input(p_columns), p_relation
    );
end;
$$;

create or replace function _primary_key_list(p_table regclass)
returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
    -- p_table's primary key columns, quoted, comma-separated, in key order.
    select string_agg(format('%I', a.attname), ', ' order by k.n)
    from pg_index as i
    cross join unnest(i.indkey) with ordinality as k (attnum, n)
    join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = p_table and i.indisprimary
$$;

create or replace function rows_breaking_constraints(p_table text, p_limit integer default 10)
returns table (constraint_name text, row_key text)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: up to p_limit rows of p_table, by primary key, for each of its
-- CHECK constraints not yet validated (added NOT VALID by a migration,
-- because a database of an earlier release may hold rows it refuses). A
-- backup refuses to write such rows: the restore would refuse them.
declare
    v_table regclass := _require_backup_table(p_table);
    v_check record;
    v_key text;
begin
    v_key := _primary_key_list(v_table);
    for v_check in
        select c.conname, pg_get_expr(c.conbin, c.conrelid) as expression
        from pg_constraint as c
        where c.conrelid = v_table and c.contype = 'c' and not c.convalidated
        order by c.conname
    loop
        return query execute format(
            'select %L::text, row(%s)::text from %s where not (%s) order by %s limit %s',
            v_check.conname, v_key, v_table, v_check.expression, v_key, p_limit
        );
    end loop;
end;
$$;

create or replace function backup_set_begin(p_set text, p_tables text[], p_after bigint)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the set p_set of p_tables recorded in backup_sets, as 'full'
-- when it holds every table a backup holds, else 'partial', with a number
-- above every set recorded here and above p_after (the highest number the
-- backup directory holds: sets made before this database was restored
-- there, or made elsewhere, still come first). Returns {"number", "kind"}:
-- the number orders sets, whatever a clock said.
declare
    v_sequence constant regclass := pg_get_serial_sequence('backup_sets', 'set_number');
    v_floor bigint;
    v_set backup_sets;
begin
    perform _require_backup_table(t) from unnest(p_tables) as t;
    v_floor := greatest(
        coalesce(p_after, 0), (select coalesce(max(s.set_number), 0) from backup_sets as s)
    );
    if v_floor > coalesce(pg_sequence_last_value(v_sequence), 0) then
        perform setval(v_sequence, v_floor);
    end if;
    insert into backup_sets (set_name, kind, tables)
    values (
        p_set,
        case when _backup_tables() <@ p_tables then 'full' else 'partial' end,
        array(select t from unnest(_backup_tables()) as t where t = any(p_tables))
    )
    returning * into v_set;
    return jsonb_build_object('number', v_set.set_number, 'kind', v_set.kind);
end;
$$;

create or replace function backup_record(p_set text, p_table text, p_file text)
returns table (row_count bigint, checksum text)
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: the row count and checksum of p_table as the caller's snapshot
-- sees it, for the file's header, recorded in backup_catalog in the
-- caller's transaction: the record stays only if the backup commits.
declare
    v_state record;
begin
    select * into v_state from _keyed_checksums(_require_backup_table(p_table));
    insert into backup_catalog (
        set_name, table_name, file_name, row_count, checksum, keyed_checksum
    )
    values (p_set, p_table, p_file, v_state.row_count, v_state.checksum, v_state.keyed_checksum);
    return query select v_state.row_count, v_state.checksum;
end;
$$;

create or replace function _restore_locks(p_tables text[])
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: refuses at once (DAT08) while a backup or another restore of one
-- of p_tables runs; else holds, until the transaction ends, p_tables
-- exclusively and the tables that reference them against writers (on
-- Citus exclusively too: their keys are dropped), all in the one lock
-- order (procedures/003).
declare
    v_table text;
    v_modes jsonb := '{}';
begin
    foreach v_table in array p_tables loop
        perform _require_backup_table(v_table);
        if not pg_try_advisory_xact_lock(backup_lock_key(v_table)) then
            raise exception '% is busy: % holds it', v_table,
                lock_holders(v_table::regclass, backup_lock_key(v_table))
                using errcode = 'DAT08', hint = 'Try again when it has finished.';
        end if;
        v_modes := v_modes || jsonb_build_object(v_table, 'access exclusive');
    end loop;
    foreach v_table in array p_tables loop
        v_modes := coalesce((
            select jsonb_object_agg(c, case
                when _citus_kind(v_table::regclass) = 'reference' then 'access exclusive'
                else 'share row exclusive' end)
            from unnest(_referencing_tables(v_table::regclass)) as c
            where not c = any(p_tables)
        ), '{}') || v_modes;
    end loop;
    perform _lock_tables(v_modes);
end;
$$;

create or replace function restore_lock(p_tables text[])
returns void
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: _restore_locks for every table a restore of a whole set will
-- replace, taken at once in the one lock order before any is staged (a
-- table at a time, parents first, they would be taken in the wrong order).
begin
    perform _restore_locks(p_tables);
end;
$$;

create or replace function _forget_nullable_defaults(p_staging regclass)
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: no nullable column of p_staging has a default.
declare
    v_column text;
begin
    for v_column in
        select a.attname from pg_attribute as a
        join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = p_staging and a.attnum > 0 and not a.attnotnull
    loop
        execute format('alter table %s alter column %I drop default', p_staging, v_column);
    end loop;
end;
$$;

create or replace function restore_begin(p_table text)
returns text
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: refuses at once (DAT08) while a backup or another restore of
-- p_table runs; else locks p_table against every other reader and writer,
-- and the tables that reference it against writers, until the caller's
-- transaction ends (waiting at most the caller's lock_timeout, 55P03 naming
-- who holds it), and creates the empty staging table
-- pg_temp.restore_<p_table>, shaped like p_table and dropped at commit,
-- that the caller may COPY into. Returns the staging table's name.
declare
    v_staging text := 'restore_' || _require_backup_table(p_table)::text;
begin
    perform _restore_locks(array[p_table]);
    if _own_temp_table(v_staging) then
        execute format('drop table pg_temp.%I', v_staging);
    end if;
    -- A file of an earlier release may lack columns the table has since
    -- gained: a nullable one is NULL there (nobody recorded it), another
    -- takes its default.
    execute format(
        'create temp table %I (like %s including defaults) on commit drop',
        v_staging, p_table::regclass
    );
    perform _forget_nullable_defaults(('pg_temp.' || v_staging)::regclass);
    execute format('grant insert on pg_temp.%I to %I', v_staging, session_user);
    return v_staging;
end;
$$;

create or replace function _restore_diff(p_table regclass, p_staging regclass)
returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
set work_mem = '256MB'
as $$
-- Promise: how replacing p_table's rows by p_staging's would change it,
-- matched by primary key: {"added", "removed", "changed"} row counts. One
-- hash join on the key columns, rows compared as composites (1M rows: ~1 s;
-- through their text, a multiple of that).
declare
    v_key text[];
    v_diff jsonb;
begin
    select array_agg(format('%I', a.attname) order by k.n) into v_key
    from pg_index as i
    cross join unnest(i.indkey) with ordinality as k (attnum, n)
    join pg_attribute as a on a.attrelid = i.indrelid and a.attnum = k.attnum
    where i.indrelid = p_table and i.indisprimary;
    execute format($sql$
        select jsonb_build_object(
            'added', count(*) filter (where c.%1$s is null),
            'removed', count(*) filter (where s.%1$s is null),
            'changed', count(*) filter (
                where s.%1$s is not null and c.%1$s is not null and row(s.*) is distinct from row(c.*)
            )
        )
        from %2$s as s full join %3$s as c on %4$s
    $sql$, v_key[1], p_staging, p_table,
        (select string_agg(format('s.%1$s = c.%1$s', k), ' and ') from unnest(v_key) as k))
    into v_diff;
    return v_diff;
end;
$$;

create or replace function _advance_identities(p_tables text[])
returns void
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: each identity sequence of p_tables is past every id its table
-- now holds. Only forward: an id handed out once (a batch, a rejection) is
-- never handed out again, whatever a restore brought back. Sequences are
-- not transactional: a dry run must not call this.
declare
    v_identity record;
    v_sequence regclass;
    v_max bigint;
begin
    for v_identity in
        select a.attrelid::regclass::text as table_name, a.attname::text as column_name
        from pg_attribute as a
        where a.attrelid = any(array(select t::regclass from unnest(p_tables) as t))
            and a.attidentity <> ''
    loop
        v_sequence := pg_get_serial_sequence(v_identity.table_name, v_identity.column_name);
        execute format('select max(%I) from %I', v_identity.column_name, v_identity.table_name)
        into v_max;
        if v_max > coalesce(pg_sequence_last_value(v_sequence), 0) then
            perform setval(v_sequence, v_max);
        end if;
    end loop;
end;
$$;

create or replace function _reopen_resolved_by_gone_rows(p_table text)
returns integer
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every rejection of p_table resolved by a row with its id is open
-- again when no row of p_table has that id now; returns how many. In three
-- steps, each of which Citus plans (a local table's update may not read a
-- distributed one).
declare
    v_ids integer[];
    v_there integer[];
    v_reopened integer;
begin
    select coalesce(array_agg(distinct e.record_id), '{}') into v_ids
    from ingest_errors as e
    where e.table_name = p_table and e.resolved_at is not null;
    execute format('select coalesce(array_agg(t.%I), ''{}'') from %I as t where t.%1$I = any($1)',
        (_table_columns(p_table))[1], p_table)
    into v_there using v_ids;
    update ingest_errors as e
    set resolved_by_batch = null, resolved_at = null
    from (
        select x.error_id from ingest_errors as x
        where x.table_name = p_table and x.resolved_at is not null
            and not x.record_id = any(v_there)
        order by x.error_id for no key update  -- the one order for rows (procedures/003)
    ) as l
    where e.error_id = l.error_id;
    get diagnostics v_reopened = row_count;
    return v_reopened;
end;
$$;

create or replace function _after_restore(p_tables text[])
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: every record that says rows of p_tables are in the table is true
-- again: a migrated file, or a stored answer to a repeated request, whose
-- batch's rows are not all there any more is forgotten (the file may load
-- again, the request is answered anew), and a rejection resolved by a row
-- that is gone is open again. Batches of earlier releases (no lineage)
-- are left as they are. Returns {"files", "answers", "reopened"} counts.
declare
    v_table text;
    v_gone bigint[] := '{}';  -- the batches of p_tables whose rows are not all there
    v_gone_here bigint[];
    v_files integer;
    v_answers integer;
    v_reopened integer := 0;
    v_count integer;
    v_back bigint[];
begin
    foreach v_table in array p_tables loop
        if not v_table = any(_data_tables()) then
            continue;
        end if;
        -- one pass over the table: the batches whose rows are not all
        -- there, and those with rows there (a million rows: 0.16 s, where a
        -- second pass for the latter took 0.23 more)
        execute format($sql$
            with present as materialized (
                select t.batch_id, count(*) as n from %I as t
                where t.batch_id is not null group by t.batch_id
            )
            select
                array(
                    select b.batch_id from ingest_batches as b
                    left join present as p on p.batch_id = b.batch_id
                    where b.table_name = %L and b.lineage and b.inserted > coalesce(p.n, 0)
                ),
                array(select p.batch_id from present as p)
        $sql$, v_table, v_table) into v_gone_here, v_back;
        v_gone := v_gone || v_gone_here;  -- every table's, not the last one's
        v_count := _reopen_resolved_by_gone_rows(v_table);
        v_reopened := v_reopened + v_count;
        -- a batch reverted after the backup was taken is back (v_back): it
        -- may be reverted again (two steps: Citus plans no update of a
        -- local table that reads one of its own)
        update ingest_batches set reverted_by = null
        where table_name = v_table and reverted_by is not null and batch_id = any(v_back);
    end loop;
    delete from migrated_files as m where m.batch_id = any(v_gone);
    get diagnostics v_files = row_count;
    delete from idempotency_keys as k where k.batch_id = any(v_gone);
    get diagnostics v_answers = row_count;
    return jsonb_build_object('files', v_files, 'answers', v_answers, 'reopened', v_reopened);
end;
$$;

create or replace function _restore_tables(p_states jsonb, p_dry_run boolean)
returns jsonb
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: for every {table: {"rows", "checksum", "file", "columns"}} of
-- p_states, whose staging tables restore_begin made and the caller filled
-- (with the file's "columns" only, when it lacks some of the table's:
-- those are NULL, or their default), replaces the table's rows with the
-- staged ones, in _backup_tables() order, in the caller's transaction.
-- Every constraint is checked; references into and out of the tables once
-- per table, not row by row. Each table must then hold the recorded number
-- of rows with the recorded checksum, else DAT06. Then the bookkeeping
-- follows the rows (_after_restore), and, unless p_dry_run, each data table
-- restored is recorded as a batch of its own ('restore:FILE') and the
-- identity sequences are moved past the restored ids; a dry run moves no
-- sequence. Returns, per table: rows, and added/removed/changed against
-- what it held before, and the bookkeeping that followed ("bookkeeping").
declare
    v_tables text[] := array(
        select t from unnest(_backup_tables()) with ordinality as b (t, n)
        where p_states ? t order by n
    );
    -- the data tables no foreign key points into (employees), read before
    -- the keys are dropped below
    v_unreferenced constant text[] := array(
        select t from unnest(_data_tables()) as t
        where not exists (
            select from pg_constraint as f where f.contype = 'f' and f.confrelid = t::regclass
        )
    );
    v_table text;
    v_result jsonb := '{}';
    v_suspended jsonb := '[]';
    v_replace text[];
    v_found record;
begin
    perform _one_connection_per_node();  -- before any read: the keys are dropped below
    if cardinality(v_tables) <> (select count(*) from jsonb_object_keys(p_states)) then
        perform _require_backup_table(
            (select k from jsonb_object_keys(p_states) as k where k <> all(v_tables) limit 1)
        );
    end if;
    perform _restore_locks(v_tables);
    foreach v_table in array v_tables loop
        if not _own_temp_table('restore_' || v_table) then
            raise exception 'restore_begin(%) was not called in this transaction', v_table
                using errcode = 'DAT02';
        end if;
        v_result := v_result || jsonb_build_object(v_table, _restore_diff(
            v_table::regclass, ('pg_temp.restore_' || v_table)::regclass
        ));
    end loop;

    -- References are checked once per table: the restored tables' own keys
    -- are dropped and re-created (validated against all rows) at the end,
    -- and the deferrable ones into them are checked at the end too.
    set constraints all deferred;
    foreach v_table in array v_tables loop
        v_suspended := v_suspended || _suspend_foreign_keys(v_table::regclass)
            || _suspend_keys_into(v_table::regclass);
    end loop;
    foreach v_table in array v_tables loop
        if exists (
            select from pg_constraint as f
            where f.contype = 'f' and f.confrelid = v_table::regclass
        ) then
            execute format('delete from %I', v_table);  -- still referenced: no truncate
            execute format('insert into %I overriding system value select * from pg_temp.%I',
                v_table, 'restore_' || v_table);
        elsif v_table = any(v_unreferenced) then
            -- a data table nobody references (employees, the largest): its
            -- indexes are built once, not row by row
            v_suspended := _suspend_indexes(v_table::regclass) || v_suspended;
            v_replace := array[
                format('truncate %I', v_table),
                format('insert into %I select * from pg_temp.%I', v_table, 'restore_' || v_table)
            ];
            if _counts_hires(v_table::regclass) then  -- the counts that change, not all
                perform _replace_counting_hires(v_replace);
            else
                execute v_replace[1];
                execute v_replace[2];
            end if;
        else
            execute format('truncate %I', v_table);
            execute format('insert into %I overriding system value select * from pg_temp.%I',
                v_table, 'restore_' || v_table);
        end if;
    end loop;
    perform _reinstate(v_suspended);
    set constraints all immediate;  -- so a broken reference is reported as such

    foreach v_table in array v_tables loop
        select * into v_found
        from relation_checksum(v_table::regclass, p_states -> v_table -> 'columns');
        if v_found.row_count <> (p_states -> v_table ->> 'rows')::bigint
            or v_found.checksum <> _unsigned_checksum((p_states -> v_table ->> 'checksum')::numeric)
        then
            raise exception 'restored % rows of % with checksum %, but the backup recorded % rows with checksum %',
                v_found.row_count, v_table, v_found.checksum, p_states -> v_table ->> 'rows',
                _unsigned_checksum((p_states -> v_table ->> 'checksum')::numeric)
                using errcode = 'DAT06',
                    hint = 'The backup file does not hold the rows it was made from.';
        end if;
        v_result := jsonb_set(v_result, array[v_table],
            jsonb_build_object('rows', v_found.row_count) || (v_result -> v_table));
    end loop;

    if not p_dry_run then
        perform _advance_identities(v_tables);
    end if;
    v_result := v_result || jsonb_build_object('bookkeeping', _after_restore(v_tables));
    if not p_dry_run then
        insert into ingest_batches (
            table_name, source, lineage, submitted, inserted, removed, finished_at
        )
        select
            t, 'restore:' || coalesce(p_states -> t ->> 'file', 'a backup'), false,
            (v_result -> t ->> 'rows')::integer, (v_result -> t ->> 'rows')::integer,
            (v_result -> t ->> 'rows')::bigint - (v_result -> t ->> 'added')::bigint
            + (v_result -> t ->> 'removed')::bigint,
            clock_timestamp()
        from unnest(v_tables) as t
        where t = any(_data_tables());
    end if;
    return v_result;
end;
$$;

create or replace function restore_finish(
    p_table text, p_rows bigint, p_checksum text, p_file text,
    p_columns jsonb default null, p_dry_run boolean default false
)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, public, pg_temp
as $$
-- Promise: as _restore_tables for the one data table p_table (staged by
-- restore_begin from the backup file p_file, of p_columns when it lacks
-- some of the table's), but only to a state a backup of this database
-- recorded in backup_catalog, else DAT09 and nothing changes: a caller
-- cannot stage rows of its own and make them the table. Returns {"rows",
-- "added", "removed", "changed", "bookkeeping"}.
declare
    v_state record;
    v_done jsonb;
begin
    if p_table is null or not p_table = any(_data_tables()) then
        raise exception 'restore_finish restores one of %, not "%"',
            array_to_string(_data_tables(), ', '), p_table
            using errcode = 'DAT01',
                hint = 'The ingest log is restored with its whole backup set (dataarch restore --all).';
    end if;
    if not _own_temp_table('restore_' || p_table) then
        raise exception 'restore_begin(%) was not called in this transaction', p_table
            using errcode = 'DAT02';
    end if;
    select * into v_state
    from _keyed_checksums(('pg_temp.restore_' || p_table)::regclass, p_columns);
    if not exists (
        select from backup_catalog as c
        where c.table_name = p_table and c.row_count = v_state.row_count
            and c.keyed_checksum = v_state.keyed_checksum
    ) then
        raise exception 'no backup of this database recorded these % rows of %', v_state.row_count, p_table
            using errcode = 'DAT09',
                hint = 'Only a state a backup recorded can be restored through this function.';
    end if;
    v_done := _restore_tables(jsonb_build_object(p_table, jsonb_build_object(
        'rows', p_rows, 'checksum', p_checksum, 'file', p_file, 'columns', p_columns
    )), p_dry_run);
    return (v_done -> p_table) || jsonb_build_object('bookkeeping', v_done -> 'bookkeeping');
end;
$$;

-- _require_backup_table and relation_checksum stay callable by everyone:
-- they read only what the caller may read (table_checksum needs them).
revoke all on function _keyed_checksums(regclass, jsonb) from public;
revoke all on function backup_set_begin(text, text[], bigint) from public;
revoke all on function backup_record(text, text, text) from public;
revoke all on function _restore_locks(text[]) from public;
revoke all on function restore_lock(text[]) from public;
revoke all on function _forget_nullable_defaults(regclass) from public;
revoke all on function restore_begin(text) from public;
revoke all on function _restore_diff(regclass, regclass) from public;
revoke all on function _advance_identities(text[]) from public;
revoke all on function _reopen_resolved_by_gone_rows(text) from public;
revoke all on function _after_restore(text[]) from public;
revoke all on function _restore_tables(jsonb, boolean) from public;
revoke all on function restore_finish(text, bigint, text, text, jsonb, boolean) from public;
grant execute on function table_checksum(text) to dataarch_api;
grant execute on function backup_set_begin(text, text[], bigint) to dataarch_api;
grant execute on function backup_record(text, text, text) to dataarch_api;
grant execute on function restore_begin(text) to dataarch_api;
grant execute on function restore_finish(text, bigint, text, text, jsonb, boolean) to dataarch_api;
