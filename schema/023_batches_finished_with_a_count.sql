-- _finish_batch takes the batch's inserted count apart from the ids that
-- may resolve open rejections (procedures/020): a CSV file of a million
-- rows passes only those ids an open rejection carries. procedures/ makes
-- the new form; the old one goes.

drop function if exists _finish_batch(bigint, text, bigint, integer[], bigint);
