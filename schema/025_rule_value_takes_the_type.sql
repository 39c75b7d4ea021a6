-- _rule_value takes the field's JSON type too (procedures/004: an id that
-- passed its rule is cast straight to integer unless it is a JSON number
-- written with a fraction); procedures/ makes the new form, the old goes.

drop function if exists _rule_value(text, text);
