-- oncall.doctor(): set-ups that let a user reach a gated role's privileges without the gate,
-- or that break the gate. One row per finding; a clean set-up returns none.

CREATE OR REPLACE FUNCTION @extschema@._findings()
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
),
-- The PagerDuty identity each login role stands for, as the gate resolves it (decide.rs).
resolved_identity AS (
    SELECT m.oid, m.rolname,
           lower(btrim(coalesce(
               (SELECT i.email FROM @extschema@.identities AS i WHERE i.role_name = m.rolname),
               CASE WHEN strpos(m.rolname, '@') > 0 THEN m.rolname END,
               CASE WHEN btrim(ltrim(coalesce(current_setting('pg_oncall.email_domain', true), ''), '@')) <> ''
                    THEN m.rolname || '@' || btrim(ltrim(current_setting('pg_oncall.email_domain', true), '@')) END))) AS email
      FROM pg_roles AS m
     WHERE m.rolcanlogin AND NOT m.rolsuper
),
new_grants AS (   -- from PostgreSQL 16, INHERIT and SET are options of each grant
    SELECT current_setting('server_version_num')::int >= 160000 AS per_grant
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
SELECT 'error', format('role %I', g.role_name),
       'the rule requires an open incident, but pg_oncall.sync_incidents is off: nobody can assume the role',
       'ALTER SYSTEM SET pg_oncall.sync_incidents = auto; SELECT pg_reload_conf();'
  FROM @extschema@.gated_roles AS g
 WHERE g.require_incident AND NOT @extschema@._incidents_synced()
UNION ALL
SELECT 'error', 'oncall.status()',
       format('the last successful incident sync is older than pg_oncall.max_staleness (%s): require_incident rules admit nobody%s',
              coalesce(s.incidents_last_success_at::text, 'never'),
              CASE WHEN s.last_error IS NOT NULL THEN format(' (last error: %s)', s.last_error) ELSE '' END),
       'The sync''s token needs the incidents.read scope besides oncalls.read and users.read; see oncall.status(), then SELECT oncall.refresh().'
  FROM @extschema@.sync_state AS s
 WHERE s.token_configured AND @extschema@._incidents_synced() AND @extschema@._is_stale(s.incidents_last_success_at)
   AND EXISTS (SELECT 1 FROM @extschema@.gated_roles AS g WHERE g.require_incident)
UNION ALL
SELECT 'warning', 'pg_oncall.annotate_incidents',
       format('annotate_incidents is on, but no note can be posted: %s', coalesce(n.last_error, 'the worker has not checked the settings yet')),
       'Set pg_oncall.pagerduty_write_token_file (a token with incidents.write) and pg_oncall.pagerduty_from_email (a PagerDuty user''s email), then reload.'
  FROM @extschema@._notes_status() AS n
 WHERE current_setting('pg_oncall.annotate_incidents', true) = 'on' AND NOT n.enabled
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
   -- From PostgreSQL 16 CREATEROLE grants only roles held WITH ADMIN OPTION (reported apart).
   AND NOT (SELECT per_grant FROM new_grants)
   AND NOT EXISTS (SELECT 1 FROM gated AS g WHERE g.role_oid = c.oid)
UNION ALL
SELECT 'error', format('role %I', m.rolname),
       format('%I inherits the privileges of gated role %I (%s%s): it uses them without SET ROLE, past the gate',
              m.rolname, g.role_name,
              CASE WHEN (SELECT per_grant FROM new_grants) THEN 'a grant WITH INHERIT TRUE' ELSE 'INHERIT' END,
              CASE WHEN EXISTS (SELECT 1 FROM pg_auth_members AS a WHERE a.member = m.oid AND a.roleid = g.role_oid)
                   THEN '' ELSE ', through a chain of roles' END),
       CASE WHEN (SELECT per_grant FROM new_grants)
            -- The member's own grant on the way (inherit_option read through to_jsonb: the
            -- column does not exist before 16, and this body must parse there too).
            THEN (SELECT format('GRANT %I TO %I WITH INHERIT FALSE; -- ALTER ROLE ... NOINHERIT does not change existing grants',
                                x.rolname, m.rolname)
                    FROM pg_auth_members AS a JOIN pg_roles AS x ON x.oid = a.roleid
                   WHERE a.member = m.oid AND coalesce((to_jsonb(a) ->> 'inherit_option')::boolean, true)
                     AND (a.roleid = g.role_oid OR pg_has_role(a.roleid, g.role_oid, 'USAGE'))
                   ORDER BY a.roleid = g.role_oid DESC, x.rolname LIMIT 1)
            ELSE format('ALTER ROLE %I NOINHERIT; -- and every role between it and %I', m.rolname, g.role_name) END
  FROM gated AS g
  JOIN pg_roles AS m ON m.oid <> g.role_oid AND NOT m.rolsuper
 WHERE g.role_oid IS NOT NULL AND pg_has_role(m.oid, g.role_oid, 'USAGE')
UNION ALL
SELECT 'error', format('role %I', m.rolname),
       format('%I holds ADMIN OPTION on gated role %I: it can grant the role to anyone, itself included with INHERIT, past the gate',
              m.rolname, g.role_name),
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
UNION ALL
SELECT 'error', format('role %I', m.rolname),
       format('%I can read or write files on the server (%s): it can read the PagerDuty token file, or change the server''s configuration',
              m.rolname, array_to_string(ARRAY(SELECT p.rolname::text FROM pg_roles AS p
                                                 WHERE p.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
                                                   AND pg_has_role(m.oid, p.oid, 'MEMBER') ORDER BY 1), ', ')),
       format('REVOKE pg_read_server_files, pg_write_server_files, pg_execute_server_program FROM %I;', m.rolname)
  FROM pg_roles AS m
 WHERE NOT m.rolsuper AND EXISTS (SELECT 1 FROM gated)
   AND m.rolname NOT IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
   AND EXISTS (SELECT 1 FROM pg_roles AS p
                WHERE p.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program')
                  AND pg_has_role(m.oid, p.oid, 'MEMBER'))
UNION ALL
SELECT 'error', format('function %s', p.oid::regprocedure),
       format('SECURITY DEFINER function owned by gated role %I can be executed by %s: it runs with the role''s rights, past the gate',
              g.role_name, array_to_string(ARRAY(SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                                                   FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                                                  WHERE a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE' ORDER BY 1), ', ')),
       format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC; -- and from every other grantee, or ALTER FUNCTION %s SECURITY INVOKER',
              p.oid::regprocedure, p.oid::regprocedure)
  FROM gated AS g
  JOIN pg_proc AS p ON p.proowner = g.role_oid AND p.prosecdef
 WHERE EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a
                WHERE a.grantee <> p.proowner AND a.privilege_type = 'EXECUTE')
UNION ALL
SELECT 'error', format('%s %s', CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, c.oid::regclass),
       format('%s owned by gated role %I can be read by %s: it reads its tables with the role''s rights, past the gate',
              CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, g.role_name,
              array_to_string(ARRAY(SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                                      FROM aclexplode(c.relacl) AS a
                                     WHERE a.grantee <> c.relowner AND a.privilege_type = 'SELECT' ORDER BY 1), ', ')),
       format('REVOKE SELECT ON %s FROM PUBLIC; -- and from every other grantee%s', c.oid::regclass,
              CASE c.relkind WHEN 'v' THEN format(', or ALTER VIEW %s SET (security_invoker = true)', c.oid::regclass) ELSE '' END)
  FROM gated AS g
  JOIN pg_class AS c ON c.relowner = g.role_oid AND c.relkind IN ('v', 'm')
 WHERE NOT coalesce('security_invoker=true' = ANY (c.reloptions) OR 'security_invoker=on' = ANY (c.reloptions), false)
   AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner AND a.privilege_type = 'SELECT')
UNION ALL
SELECT 'error', format('default privileges of role %I', g.role_name),
       format('objects gated role %I creates%s are granted to %s: the on-call engineer''s work as %I becomes theirs without the gate',
              g.role_name, CASE WHEN d.defaclnamespace <> 0 THEN format(' in schema %I', d.defaclnamespace::regnamespace) ELSE '' END,
              array_to_string(ARRAY(SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
                                      FROM aclexplode(d.defaclacl) AS a WHERE a.grantee <> g.role_oid ORDER BY 1), ', '),
              g.role_name),
       format('ALTER DEFAULT PRIVILEGES FOR ROLE %I%s REVOKE ALL ON %s FROM <grantee>;', g.role_name,
              CASE WHEN d.defaclnamespace <> 0 THEN format(' IN SCHEMA %I', d.defaclnamespace::regnamespace) ELSE '' END,
              CASE d.defaclobjtype WHEN 'r' THEN 'TABLES' WHEN 'S' THEN 'SEQUENCES' WHEN 'f' THEN 'FUNCTIONS'
                                   WHEN 'T' THEN 'TYPES' WHEN 'n' THEN 'SCHEMAS' ELSE 'TABLES' END)
  FROM gated AS g
  JOIN pg_default_acl AS d ON d.defaclrole = g.role_oid
 WHERE EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) AS a WHERE a.grantee <> g.role_oid)
UNION ALL
SELECT 'error', format('identity %s', r.email),
       format('roles %s all stand for PagerDuty identity %s: whoever logs in as any of them is on call when its owner is',
              array_to_string(array_agg(quote_ident(r.rolname) ORDER BY r.rolname), ', '), r.email),
       'Drop or rename the role that is not that person''s, or map each role to its own email in oncall.identities.'
  FROM resolved_identity AS r
 WHERE r.email IS NOT NULL AND EXISTS (SELECT 1 FROM gated)
 GROUP BY r.email
HAVING count(*) > 1
$$;

-- Without the library preloaded nothing may touch its C functions (loading it then fails):
-- that one finding is answered here, before anything else is planned.
CREATE OR REPLACE FUNCTION @extschema@.doctor()
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
