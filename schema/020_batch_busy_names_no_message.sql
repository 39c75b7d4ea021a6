-- _batch_busy (procedures/090) no longer takes the waiting statement's
-- message: a wait its caller's locks already named is raised again as it
-- was, hint included, by the caller.

drop function if exists _batch_busy(bigint, text, text);
