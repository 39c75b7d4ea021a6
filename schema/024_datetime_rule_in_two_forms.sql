-- The date-time rule is now _any_datetime_problem (every shape, by the
-- pattern) and _usual_datetime_problem (the usual shape, without it), both
-- in procedures/010; _datetime_shaped, the usual shape's fast match, goes.

drop function if exists _datetime_shaped(text);
