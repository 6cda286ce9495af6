-- pg_oncall SQL interface. The C entry points are Rust functions in src/api.rs (their SQL is
-- written here by hand so that names, argument types, defaults and privileges match DESIGN.md).
-- Every statement here can be run again (CREATE OR REPLACE, GRANT): each upgrade script ends
-- with this file. Every SQL or PL/pgSQL function pins its search_path, so nothing a user puts
-- in `public` is ever called by it (DESIGN.md, guarantee 8); the C functions resolve no names.

-- ---------------------------------------------------------------- decisions (everyone)

CREATE OR REPLACE FUNCTION @extschema@.check_oncall_access() RETURNS boolean
    STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_oncall_access_fast';
COMMENT ON FUNCTION @extschema@.check_oncall_access() IS
    'Is the session user on call now (default levels, any policy)? In RLS prefer USING ((SELECT oncall.check_oncall_access())).';

CREATE OR REPLACE FUNCTION @extschema@.check_oncall_access(role_name name) RETURNS boolean
    STRICT STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'check_role_access_wrapper';
COMMENT ON FUNCTION @extschema@.check_oncall_access(name) IS
    'May the session user assume this role now? True for a role that is not gated.';

CREATE OR REPLACE FUNCTION @extschema@.is_on_call(email text, min_escalation_level int DEFAULT NULL,
                                       escalation_policy_ids text[] DEFAULT NULL) RETURNS boolean
    STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'is_on_call_wrapper';

CREATE OR REPLACE FUNCTION @extschema@._whoami() RETURNS TABLE ("session_user" text, identity text, on_call boolean,
                                                     on_call_until timestamptz, assumable_roles text[],
                                                     incident_ids text[])
    STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'whoami_wrapper';
CREATE OR REPLACE FUNCTION @extschema@.whoami(OUT "session_user" name, OUT identity text, OUT on_call boolean,
                                   OUT on_call_until timestamptz, OUT assumable_roles name[],
                                   OUT incident_ids text[]) RETURNS record
    STABLE PARALLEL SAFE LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT w."session_user"::name, w.identity, w.on_call, w.on_call_until, w.assumable_roles::name[], w.incident_ids
            FROM @extschema@._whoami() AS w $$;
COMMENT ON FUNCTION @extschema@.whoami() IS
    'Who the gate thinks you are; incident_ids: the open PagerDuty incidents assigned to you (NULL when incidents are not synced or their data is stale).';

-- ---------------------------------------------------------------- the sync (superusers)

CREATE OR REPLACE FUNCTION @extschema@._refresh(wait boolean, timeout_ms bigint) RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'refresh_wrapper';
CREATE OR REPLACE FUNCTION @extschema@.refresh(wait boolean DEFAULT true, timeout interval DEFAULT '30s') RETURNS void
    VOLATILE LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT @extschema@._refresh(wait, (extract(epoch FROM timeout) * 1000)::bigint) $$;

CREATE OR REPLACE FUNCTION @extschema@.status(OUT token_configured boolean, OUT last_attempt_at timestamptz,
                                   OUT last_success_at timestamptz, OUT last_error text, OUT stale boolean,
                                   OUT shifts integer, OUT pages integer, OUT requests integer,
                                   OUT duration_ms double precision, OUT next_attempt_at timestamptz,
                                   OUT syncs_ok bigint, OUT syncs_failed bigint,
                                   OUT elevation_events_dropped bigint,
                                   OUT incidents integer, OUT incident_requests integer,
                                   OUT incidents_last_success_at timestamptz, OUT incidents_stale boolean,
                                   OUT notes_enabled boolean, OUT notes_posted bigint, OUT notes_failed bigint,
                                   OUT notes_dropped bigint, OUT last_note_error text) RETURNS record
    STABLE LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT s.token_configured, s.last_attempt_at, s.last_success_at, s.last_error,
                 @extschema@._is_stale(s.last_success_at),
                 s.shifts, s.pages, s.requests, s.duration_ms, s.next_attempt_at, s.syncs_ok, s.syncs_failed,
                 @extschema@._elevation_events_dropped(),
                 s.incidents, s.incident_requests, s.incidents_last_success_at,
                 CASE WHEN @extschema@._incidents_synced() THEN @extschema@._is_stale(s.incidents_last_success_at) END,
                 n.enabled, n.posted, n.failed, n.dropped, n.last_error
            FROM @extschema@.sync_state AS s, @extschema@._notes_status() AS n $$;
COMMENT ON FUNCTION @extschema@.status() IS
    'The sync''s health: requests counts every request of the last sync, incident_requests those for open incidents; incidents_stale is NULL when incidents are not synced; notes_* count notes on incidents since the server started.';

CREATE OR REPLACE FUNCTION @extschema@._incidents_synced() RETURNS boolean
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'incidents_synced_wrapper';

CREATE OR REPLACE FUNCTION @extschema@._notes_status() RETURNS TABLE (enabled boolean, posted bigint, failed bigint,
                                                                       dropped bigint, last_error text)
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'notes_status_wrapper';

CREATE OR REPLACE FUNCTION @extschema@._elevation_events_dropped() RETURNS bigint
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'elevation_events_dropped_wrapper';

CREATE OR REPLACE FUNCTION @extschema@._is_stale(last_success_at timestamptz) RETURNS boolean
    STABLE PARALLEL SAFE LANGUAGE c AS 'MODULE_PATHNAME', 'is_stale_wrapper';

CREATE OR REPLACE FUNCTION @extschema@._snapshot_overflowed() RETURNS boolean
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'snapshot_overflowed_wrapper';

CREATE OR REPLACE FUNCTION @extschema@.stats() RETURNS TABLE (route text, decision text, count bigint)
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'stats_wrapper';

-- ---------------------------------------------------------------- configuration (superusers)

CREATE OR REPLACE FUNCTION @extschema@.gate_role(role_name name, escalation_policy_ids text[] DEFAULT NULL,
                                      schedule_ids text[] DEFAULT NULL, min_escalation_level int DEFAULT NULL,
                                      max_escalation_level int DEFAULT NULL, gate_login boolean DEFAULT false,
                                      require_reason boolean DEFAULT false, max_duration interval DEFAULT NULL,
                                      require_incident boolean DEFAULT false)
    RETURNS void
    VOLATILE LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    IF role_name IS NULL THEN
        RAISE EXCEPTION 'pg_oncall: role_name must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles AS r WHERE r.rolname = gate_role.role_name) THEN
        RAISE EXCEPTION 'pg_oncall: role "%" does not exist', role_name
            USING ERRCODE = 'undefined_object', HINT = 'Create the role first, then gate it.';
    END IF;
    INSERT INTO @extschema@.gated_roles AS g
           (role_name, escalation_policy_ids, schedule_ids, min_escalation_level, max_escalation_level, gate_login,
            require_reason, max_duration, require_incident)
        VALUES (role_name, escalation_policy_ids, schedule_ids, min_escalation_level, max_escalation_level,
                coalesce(gate_login, false), coalesce(require_reason, false), max_duration, coalesce(require_incident, false))
    ON CONFLICT ON CONSTRAINT gated_roles_pkey DO UPDATE
        SET escalation_policy_ids = excluded.escalation_policy_ids, schedule_ids = excluded.schedule_ids,
            min_escalation_level = excluded.min_escalation_level, max_escalation_level = excluded.max_escalation_level,
            gate_login = excluded.gate_login, require_reason = excluded.require_reason,
            max_duration = excluded.max_duration, require_incident = excluded.require_incident;
END
$$;

CREATE OR REPLACE FUNCTION @extschema@.ungate_role(role_name name) RETURNS boolean
    VOLATILE STRICT LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ WITH gone AS (DELETE FROM @extschema@.gated_roles AS g WHERE g.role_name = ungate_role.role_name RETURNING 1)
          SELECT count(*) > 0 FROM gone $$;

CREATE OR REPLACE FUNCTION @extschema@.override(email text, duration interval, reason text,
                                     escalation_policy_id text DEFAULT NULL) RETURNS timestamptz
    VOLATILE LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    until timestamptz;
BEGIN
    IF email IS NULL OR btrim(email) = '' THEN
        RAISE EXCEPTION 'pg_oncall: override needs an email' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF duration IS NULL OR duration <= interval '0' THEN
        RAISE EXCEPTION 'pg_oncall: override duration must be positive, got %', coalesce(duration::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF reason IS NULL OR btrim(reason) = '' THEN
        RAISE EXCEPTION 'pg_oncall: override needs a reason (it is kept on the shift and logged)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    until := clock_timestamp() + duration;
    INSERT INTO @extschema@.shifts (source, email, escalation_policy_id, starts_at, ends_at, reason, created_by)
        VALUES ('manual', btrim(email), escalation_policy_id, clock_timestamp(), until, reason, session_user);
    RAISE WARNING 'pg_oncall: override by=% for=% until=% policy=% reason=%',
        session_user, btrim(email), until, coalesce(escalation_policy_id, '-'), pg_catalog.quote_literal(reason);
    RETURN until;
END
$$;

-- ---------------------------------------------------------------- elevations (superusers, pg_monitor)

CREATE OR REPLACE VIEW @extschema@.elevations AS
    SELECT e.id, e."session_user", e.identity, e.role, e.route, e.database, e.backend_pid, e.client_addr,
           e.application_name, e.reason, e.incident_ids, e.started_at, e.ended_at, e.end_reason, e.statements
      FROM @extschema@.elevation_records AS e;
COMMENT ON VIEW @extschema@.elevations IS
    'One row per elevation: who held which gated role, from when to when, why, how it ended, how many statements.';

-- ---------------------------------------------------------------- change propagation

CREATE OR REPLACE FUNCTION @extschema@._reload_after_commit() RETURNS void
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'reload_after_commit_wrapper';
CREATE OR REPLACE FUNCTION @extschema@._config_changed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
    AS $$ BEGIN PERFORM @extschema@._reload_after_commit(); RETURN NULL; END $$;

CREATE OR REPLACE TRIGGER reload_snapshot AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.gated_roles
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._config_changed();
CREATE OR REPLACE TRIGGER reload_snapshot AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.identities
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._config_changed();
CREATE OR REPLACE TRIGGER reload_snapshot AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.shifts
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._config_changed();
CREATE OR REPLACE TRIGGER reload_snapshot AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.incidents
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._config_changed();
-- sync_state.last_success_at and incidents_last_success_at are part of the snapshot (they
-- decide whether PagerDuty rows and incidents are stale): a DBA's or a restore's change to them
-- reloads too. Only UPDATEs naming them fire, so the worker's bookkeeping of failed syncs does
-- not reload the snapshot.
CREATE OR REPLACE TRIGGER reload_snapshot
    AFTER INSERT OR UPDATE OF last_success_at, incidents_last_success_at OR DELETE OR TRUNCATE ON @extschema@.sync_state
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._config_changed();

-- ---------------------------------------------------------------- privileges

REVOKE ALL ON FUNCTION @extschema@._refresh(boolean, bigint), @extschema@.refresh(boolean, interval),
    @extschema@.gate_role(name, text[], text[], int, int, boolean, boolean, interval, boolean), @extschema@.ungate_role(name),
    @extschema@.override(text, interval, text, text), @extschema@._reload_after_commit(),
    @extschema@._config_changed(), @extschema@.status(), @extschema@.stats(), @extschema@._is_stale(timestamptz),
    @extschema@._snapshot_overflowed(), @extschema@._elevation_events_dropped(), @extschema@._incidents_synced(),
    @extschema@._notes_status()
    FROM PUBLIC;
REVOKE ALL ON @extschema@.elevations FROM PUBLIC;
GRANT SELECT ON @extschema@.elevations TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.status(), @extschema@.stats(), @extschema@._is_stale(timestamptz) TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@.check_oncall_access(), @extschema@.check_oncall_access(name),
    @extschema@.is_on_call(text, int, text[]), @extschema@.whoami(), @extschema@._whoami() TO PUBLIC;

-- The worker may already be waiting for this database's extension: wake it when we commit.
SELECT @extschema@._reload_after_commit();
