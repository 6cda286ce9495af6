-- Extended-protocol statements through psql's \bind (psql 16 and later), included by
-- transparency_common.sql.
SELECT 10 / $1::int \bind 0 \g
SELECT f_div($1) \bind 0 \g
SELECT nosuchcol FROM parent WHERE id = $1 \bind 1 \g
CALL p_raise() \bind \g
CALL p_fields() \bind \g
CREATE TABLE t_bad (a nosuchtype) \bind \g
ALTER TABLE child ALTER COLUMN note SET NOT NULL \bind \g
DO $$ BEGIN PERFORM 1 / 0; END $$ \bind \g
