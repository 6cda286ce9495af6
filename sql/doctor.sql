-- oncall.doctor(): set-ups that let a user reach a gated role's privileges without the gate,
-- or that break the gate. One row per finding; a clean set-up returns none.

CREATE FUNCTION @extschema@._findings()
    RETURNS TABLE (severity text, object text, problem text, fix text)
    STABLE LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$
WITH gated AS (
    SELECT g.*, r.oid AS role_oid, r.rolcanlogin, r.rolsuper, r.rolbypassrls, r.rolcreaterole
      FROM @extschema@.gated_roles AS g
      LEFT JOIN pg_roles AS r ON r.rolname = g.role_name
),
has_identity AS (
    SELECT m.oid, m.rolname,
           EXISTS (SELECT 1 FROM @extschema@.identities AS i WHERE i.role_name = m.rolname)
           OR strpos(m.rolname, '@') > 0
           OR coalesce(current_setting('pg_oncall.email_domain', true), '') <> '' AS ok
      FROM pg_roles AS m
)
SELECT 'error', 'pg_oncall.enforcement',
       format('enforcement is %s: refusals are %s', e, CASE e WHEN 'audit' THEN 'only logged' ELSE 'not even logged' END),
       'ALTER SYSTEM SET pg_oncall.enforcement = ''enforce''; SELECT pg_reload_conf();'
  FROM (SELECT current_setting('pg_oncall.enforcement', true) AS e) AS s
 WHERE e IS DISTINCT FROM 'enforce'
UNION ALL
SELECT 'warning', 'pg_oncall.database',
       format('the worker reads its tables in database %I, not in %I: these tables are not the ones enforced',
              current_setting('pg_oncall.database', true), current_database()),
       'Use the extension in the database named by pg_oncall.database.'
 WHERE current_setting('pg_oncall.database', true) IS DISTINCT FROM current_database()
UNION ALL
SELECT 'warning', 'pg_oncall.pagerduty_token_file',
       'no readable PagerDuty token: PagerDuty shifts never sync; only manual shifts grant',
       'Put the API token in a file owned by the server''s OS user (mode 0600), set pg_oncall.pagerduty_token_file and reload.'
  FROM @extschema@.sync_state WHERE NOT token_configured
UNION ALL
SELECT 'error', 'oncall.status()',
       format('the last successful PagerDuty sync is older than pg_oncall.max_staleness (%s): PagerDuty shifts grant nothing',
              coalesce(last_success_at::text, 'never')),
       'See last_error in oncall.status(); run SELECT oncall.refresh() once fixed.'
  FROM @extschema@.sync_state WHERE token_configured AND @extschema@._is_stale(last_success_at)
UNION ALL
SELECT 'error', 'shared memory',
       'the tables do not fit the shared-memory snapshot: decisions still use the previous one',
       'See the server log for which capacity (pg_oncall.max_shifts, max_identities, max_gated_roles); raise it and restart.'
 WHERE @extschema@._snapshot_overflowed()
UNION ALL
SELECT 'warning', format('role %I', role_name),
       'gated role does not exist (dropped or renamed?)',
       format('SELECT oncall.ungate_role(%L); -- or gate the renamed role', role_name)
  FROM gated WHERE role_oid IS NULL
UNION ALL
SELECT 'error', format('role %I', role_name),
       'gated role can log in directly without gate_login: logging in as it bypasses SET ROLE',
       format('ALTER ROLE %I NOLOGIN; -- or SELECT oncall.gate_role(%L, ..., gate_login => true)', role_name, role_name)
  FROM gated WHERE rolcanlogin AND NOT gate_login
UNION ALL
SELECT 'error', format('role %I', role_name),
       'gated role is a superuser: once assumed it can turn the gate off and reach everything',
       format('ALTER ROLE %I NOSUPERUSER; grant it only the privileges the on-call work needs', role_name)
  FROM gated WHERE rolsuper
UNION ALL
SELECT 'warning', format('role %I', role_name),
       format('gated role has %s', concat_ws(' and ', CASE WHEN rolbypassrls THEN 'BYPASSRLS' END,
                                                     CASE WHEN rolcreaterole THEN 'CREATEROLE' END)),
       'Make sure that is intended: CREATEROLE can rename roles and grant membership; BYPASSRLS skips every policy.'
  FROM gated WHERE rolbypassrls OR rolcreaterole
UNION ALL
SELECT 'warning', format('role %I', c.rolname),
       format('%I has CREATEROLE: it can grant gated roles to any role (one that inherits, too) and rename roles', c.rolname),
       format('ALTER ROLE %I NOCREATEROLE;', c.rolname)
  FROM pg_roles AS c
 WHERE c.rolcreaterole AND NOT c.rolsuper AND EXISTS (SELECT 1 FROM gated)
   AND NOT EXISTS (SELECT 1 FROM gated AS g WHERE g.role_oid = c.oid)
UNION ALL
SELECT 'error', format('role %I', m.rolname),
       format('%I inherits the privileges of gated role %I (INHERIT%s): it uses them without SET ROLE, past the gate',
              m.rolname, g.role_name,
              CASE WHEN EXISTS (SELECT 1 FROM pg_auth_members AS a WHERE a.member = m.oid AND a.roleid = g.role_oid)
                   THEN '' ELSE ', through a chain of roles' END),
       format('ALTER ROLE %I NOINHERIT; -- and every role between it and %I', m.rolname, g.role_name)
  FROM gated AS g
  JOIN pg_roles AS m ON m.oid <> g.role_oid AND NOT m.rolsuper
 WHERE g.role_oid IS NOT NULL AND pg_has_role(m.oid, g.role_oid, 'USAGE')
UNION ALL
SELECT 'warning', format('role %I', m.rolname),
       format('%I holds ADMIN OPTION on gated role %I: it can grant the role to anyone', m.rolname, g.role_name),
       format('REVOKE ADMIN OPTION FOR %I FROM %I;', g.role_name, m.rolname)
  FROM gated AS g
  JOIN pg_auth_members AS a ON a.roleid = g.role_oid AND a.admin_option
  JOIN pg_roles AS m ON m.oid = a.member AND NOT m.rolsuper
UNION ALL
SELECT 'warning', format('role %I', m.rolname),
       format('%I is a member of gated role %I but has no PagerDuty identity: it can never be on call', m.rolname, g.role_name),
       format('INSERT INTO oncall.identities VALUES (%L, ''<email in PagerDuty>'');', m.rolname)
  FROM gated AS g
  JOIN pg_roles AS m ON m.oid <> g.role_oid AND m.rolcanlogin AND NOT m.rolsuper
  JOIN has_identity AS h ON h.oid = m.oid AND NOT h.ok
 WHERE g.role_oid IS NOT NULL AND pg_has_role(m.oid, g.role_oid, 'MEMBER')
UNION ALL
SELECT 'warning', format('role %I', g.role_name),
       'gated role has gate_login but no PagerDuty identity of its own: it can never log in',
       format('INSERT INTO oncall.identities VALUES (%L, ''<email in PagerDuty>'');', g.role_name)
  FROM gated AS g JOIN has_identity AS h ON h.oid = g.role_oid AND NOT h.ok
 WHERE g.gate_login
$$;

-- Without the library preloaded nothing may touch its C functions (loading it then fails):
-- that one finding is answered here, before anything else is planned.
CREATE FUNCTION @extschema@.doctor()
    RETURNS TABLE (severity text, object text, problem text, fix text)
    STABLE LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF NOT 'pg_oncall' = ANY (string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) THEN
        RETURN QUERY SELECT 'error'::text, 'shared_preload_libraries'::text,
            'pg_oncall is not in shared_preload_libraries: nothing is gated'::text,
            'Add pg_oncall to shared_preload_libraries and restart the server.'::text;
        RETURN;
    END IF;
    RETURN QUERY SELECT f.* FROM @extschema@._findings() AS f;
END
$$;

REVOKE ALL ON FUNCTION @extschema@.doctor(), @extschema@._findings() FROM PUBLIC;
