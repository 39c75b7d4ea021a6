-- A hiring date is an instant in the years 0001 to 9999 in UTC: the range
-- of Avro's timestamp readers, of ISO 8601's four-digit years and of the
-- KPIs. "9999-12-31T23:59:59-14:00" is year 10000 in UTC, and used to be
-- accepted; such a row made every later backup unrestorable.

insert into reason_codes (reason_code, sqlstate, description) values (
    'datetime_out_of_range', '22008',
    'must be an instant in the years 0001 to 9999 in UTC'
);

-- NOT VALID first: a database of an earlier release may hold such rows
-- (dataarch db check lists them). New rows are checked from now on, and
-- the constraint is validated at once where no old row breaks it.
alter table employees add constraint employees_hiring_date_in_range
check (
    hiring_date >= '0001-01-01 00:00:00+00'
    and hiring_date < '10000-01-01 00:00:00+00'
) not valid;

do $$
begin
    if not exists (
        select from employees
        where not (
            hiring_date >= '0001-01-01 00:00:00+00'
            and hiring_date < '10000-01-01 00:00:00+00'
        )
    ) then
        alter table employees validate constraint employees_hiring_date_in_range;
    end if;
end
$$;
