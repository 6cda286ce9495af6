-- pg_oncall 0.1.0 → 0.2.0: what changes in tables and in objects api.sql and doctor.sql do not
-- redefine. scripts/upgrade-scripts.sh appends those two files (every statement in them can be
-- run again) to make the installed pg_oncall--0.1.0--0.2.0.sql.

-- Guarantee 8: the CHECK constraints' helper resolves names in pg_catalog only.
ALTER FUNCTION @extschema@._ids_valid(text[]) SET search_path = pg_catalog, pg_temp;

-- Elevations: rules' limits, and the records.
ALTER TABLE @extschema@.gated_roles
    ADD COLUMN require_reason boolean NOT NULL DEFAULT false,
    ADD COLUMN max_duration interval CHECK (max_duration > interval '0'),
    ADD COLUMN require_incident boolean NOT NULL DEFAULT false;
DROP FUNCTION @extschema@.gate_role(name, text[], text[], int, int, boolean);
DROP FUNCTION @extschema@.status();

CREATE TABLE @extschema@.elevation_records (
    id               bigint PRIMARY KEY,
    "session_user"   name NOT NULL,
    identity         text,
    role             name NOT NULL,
    route            text NOT NULL,
    database         name,
    backend_pid      int NOT NULL,
    client_addr      inet,
    application_name text,
    reason           text,
    incident_ids     text[],
    started_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    end_reason       text CHECK (end_reason IN ('reset', 'switch', 'session_end', 'shift_end', 'max_duration', 'refused')),
    statements       bigint
);
CREATE INDEX elevation_records_started_at_idx ON @extschema@.elevation_records (started_at);
COMMENT ON TABLE @extschema@.elevation_records IS
    'Elevations recorded by the pg_oncall worker; read them through oncall.elevations.';
REVOKE ALL ON @extschema@.elevation_records FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.elevation_records', '');

-- Incidents: open incidents for require_incident rules and notes, and their sync's health.
ALTER TABLE @extschema@.sync_state
    ADD COLUMN incidents integer NOT NULL DEFAULT 0,
    ADD COLUMN incident_requests integer NOT NULL DEFAULT 0,
    ADD COLUMN incidents_last_success_at timestamptz;
CREATE TABLE @extschema@.incidents (
    id                   text PRIMARY KEY,
    incident_number      int,
    title                text,
    status               text CHECK (status IN ('triggered', 'acknowledged')),
    urgency              text,
    service_id           text,
    escalation_policy_id text,
    assignee_emails      text[],
    created_at           timestamptz,
    synced_at            timestamptz
);
COMMENT ON TABLE @extschema@.incidents IS
    'Open PagerDuty incidents and their assignees (lower-cased emails), replaced by each successful incident sync.';
REVOKE ALL ON @extschema@.incidents FROM PUBLIC;
-- whoami() gains incident_ids.
DROP FUNCTION @extschema@.whoami();
DROP FUNCTION @extschema@._whoami();
