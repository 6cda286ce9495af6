-- pg_oncall monitoring, in the style of pg_stat_statements: views a monitoring role reads
-- (members of pg_monitor; nobody else, and nobody but superusers writes or resets anything).
-- docs/monitoring/ has the sql_exporter collector that scrapes them and the alert rules.
--
-- Every statement here can be run again: each upgrade script ends with this file (after
-- api.sql and doctor.sql, scripts/upgrade-scripts.sh). A view may gain columns at its end
-- only (CREATE OR REPLACE VIEW); renaming or removing one needs a DROP VIEW in the upgrade
-- script. The views' names were resolved when they were created (pg_catalog first, then this
-- schema), so nothing a user puts in `public` is ever called by them (DESIGN.md, guarantee 8).

-- ---------------------------------------------------------------- C entry points (src/api.rs)

CREATE OR REPLACE FUNCTION @extschema@._stats_reset() RETURNS timestamptz
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'stats_reset_wrapper';
CREATE OR REPLACE FUNCTION @extschema@._stats_reset_at() RETURNS timestamptz
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'stats_reset_at_wrapper';
CREATE OR REPLACE FUNCTION @extschema@._snapshot_usage()
    RETURNS TABLE (shifts bigint, max_shifts bigint, gated_roles bigint, max_gated_roles bigint,
                   identities bigint, max_identities bigint, ids bigint, max_ids bigint)
    VOLATILE LANGUAGE c AS 'MODULE_PATHNAME', 'snapshot_usage_wrapper';

-- ---------------------------------------------------------------- decisions

CREATE OR REPLACE FUNCTION @extschema@.stats_reset() RETURNS timestamptz
    VOLATILE LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT @extschema@._stats_reset() $$;
COMMENT ON FUNCTION @extschema@.stats_reset() IS
    'Zeroes the gate''s decision counters (oncall.pg_stat_oncall, oncall.stats()) cluster-wide; superusers only. Returns the reset time.';

-- Every (route, decision) pair, zeros included, so a rate is defined from the first scrape.
CREATE OR REPLACE VIEW @extschema@.pg_stat_oncall AS
    SELECT s.route, s.decision, s.count, @extschema@._stats_reset_at() AS stats_reset
      FROM @extschema@.stats() AS s;
COMMENT ON VIEW @extschema@.pg_stat_oncall IS
    'Gate decisions per route and outcome (allow, deny, audit_deny), cluster-wide, since stats_reset (the server''s start or oncall.stats_reset()).';

-- ---------------------------------------------------------------- the sync and the snapshot

CREATE OR REPLACE VIEW @extschema@.pg_stat_oncall_sync AS
    SELECT s.token_configured,
           EXISTS (SELECT FROM pg_catalog.pg_stat_activity AS a WHERE a.backend_type = 'pg_oncall sync') AS worker_running,
           s.last_attempt_at,
           s.last_success_at,
           pg_catalog.date_part('epoch', pg_catalog.now() - s.last_success_at)::double precision AS last_success_age_seconds,
           @extschema@._is_stale(s.last_success_at) AS stale,
           s.last_error,
           s.next_attempt_at,
           s.duration_ms AS last_duration_ms,
           s.syncs_ok,
           s.syncs_failed,
           s.shifts AS synced_shifts,
           s.pages,
           s.requests,
           @extschema@._elevation_events_dropped() AS elevation_events_dropped,
           u.shifts AS snapshot_shifts,
           u.max_shifts AS snapshot_max_shifts,
           u.gated_roles AS snapshot_gated_roles,
           u.max_gated_roles AS snapshot_max_gated_roles,
           u.identities AS snapshot_identities,
           u.max_identities AS snapshot_max_identities,
           u.ids AS snapshot_ids,
           u.max_ids AS snapshot_max_ids,
           @extschema@._snapshot_overflowed() AS snapshot_overflowed,
           s.incidents AS synced_incidents,
           s.incidents_last_success_at,
           CASE WHEN @extschema@._incidents_synced() THEN @extschema@._is_stale(s.incidents_last_success_at) END
               AS incidents_stale,
           n.enabled AS notes_enabled,
           n.posted AS notes_posted,
           n.failed AS notes_failed,
           n.dropped AS notes_dropped
      FROM @extschema@.sync_state AS s
      LEFT JOIN @extschema@._snapshot_usage() AS u ON true
      LEFT JOIN @extschema@._notes_status() AS n ON true;
COMMENT ON VIEW @extschema@.pg_stat_oncall_sync IS
    'The PagerDuty sync''s health (one row) and the shared-memory snapshot''s use of its capacity; see docs/monitoring/.';

-- ---------------------------------------------------------------- privileges

-- The views' tables are read with their owner's rights; their functions with the reader's.
REVOKE ALL ON FUNCTION @extschema@._stats_reset(), @extschema@._stats_reset_at(), @extschema@._snapshot_usage(),
    @extschema@.stats_reset()
    FROM PUBLIC;
REVOKE ALL ON @extschema@.pg_stat_oncall, @extschema@.pg_stat_oncall_sync FROM PUBLIC;
GRANT SELECT ON @extschema@.pg_stat_oncall, @extschema@.pg_stat_oncall_sync TO pg_monitor;
GRANT EXECUTE ON FUNCTION @extschema@._stats_reset_at(), @extschema@._snapshot_usage(), @extschema@.stats(),
    @extschema@._is_stale(timestamptz), @extschema@._elevation_events_dropped(), @extschema@._snapshot_overflowed(),
    @extschema@._incidents_synced(), @extschema@._notes_status()
    TO pg_monitor;
