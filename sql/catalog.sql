-- pg_oncall catalog: the durable, inspectable, replicated copy of what the gate decides from.
-- Every table is superuser-only; backends never read them on the hot path (the worker loads
-- them into shared memory, woken by the triggers below after each committing change).

-- PagerDuty ids are short ASCII tokens; the bound keeps every row loadable into shared memory.
-- An empty list is refused: it would match nothing, and NULL already means "any".
CREATE FUNCTION @extschema@._ids_valid(ids text[]) RETURNS boolean
    IMMUTABLE PARALLEL SAFE LANGUAGE sql SET search_path = pg_catalog, pg_temp
    AS $$ SELECT ids IS NULL
              OR coalesce(array_ndims(ids) = 1
                          AND array_position(ids, NULL) IS NULL
                          AND (SELECT bool_and(octet_length(id) BETWEEN 1 AND 63) FROM unnest(ids) AS id), false) $$;

CREATE TABLE @extschema@.gated_roles (
    role_name            name PRIMARY KEY,
    escalation_policy_ids text[] CHECK (@extschema@._ids_valid(escalation_policy_ids)),
    schedule_ids         text[] CHECK (@extschema@._ids_valid(schedule_ids)),
    min_escalation_level int CHECK (min_escalation_level >= 1),
    max_escalation_level int CHECK (max_escalation_level >= 1),
    gate_login           boolean NOT NULL DEFAULT false,
    CONSTRAINT gated_roles_levels_ordered CHECK (max_escalation_level >= min_escalation_level),
    require_reason       boolean NOT NULL DEFAULT false,
    max_duration         interval CHECK (max_duration > interval '0'),
    require_incident     boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE @extschema@.gated_roles IS
    'Roles that only an on-call session user may assume (pg_oncall). NULL arrays mean any; NULL levels fall back to the GUCs.';

CREATE TABLE @extschema@.identities (
    role_name name PRIMARY KEY,
    email     text NOT NULL CHECK (btrim(email) <> '' AND octet_length(email) <= 255)
);
COMMENT ON TABLE @extschema@.identities IS
    'Maps a PostgreSQL role to its PagerDuty email (compared case-insensitively).';

CREATE TABLE @extschema@.shifts (
    source               text NOT NULL CHECK (source IN ('pagerduty', 'manual')),
    email                text NOT NULL CHECK (btrim(email) <> '' AND octet_length(email) <= 255),
    pagerduty_user_id    text CHECK (octet_length(pagerduty_user_id) <= 63),
    escalation_policy_id text CHECK (octet_length(escalation_policy_id) BETWEEN 1 AND 63),
    escalation_level     int CHECK (escalation_level >= 1),
    schedule_id          text CHECK (octet_length(schedule_id) BETWEEN 1 AND 63),
    starts_at            timestamptz,
    ends_at              timestamptz,
    synced_at            timestamptz,
    reason               text CHECK (octet_length(reason) <= 1000),
    created_by           name,
    CONSTRAINT shifts_window_ordered CHECK (ends_at > starts_at)
);
CREATE INDEX shifts_source_idx ON @extschema@.shifts (source);
COMMENT ON TABLE @extschema@.shifts IS
    'On-call shifts. source=pagerduty rows are replaced by each successful sync; source=manual rows are the DBA''s and never touched.';

-- The sync's health, one row, written by the worker on the primary (and so replicated).
CREATE TABLE @extschema@.sync_state (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    token_configured boolean NOT NULL DEFAULT false,
    last_attempt_at  timestamptz,
    last_success_at  timestamptz,
    last_error       text,
    shifts           integer NOT NULL DEFAULT 0,
    pages            integer NOT NULL DEFAULT 0,
    requests         integer NOT NULL DEFAULT 0,
    duration_ms      double precision,
    next_attempt_at  timestamptz,
    syncs_ok         bigint NOT NULL DEFAULT 0,
    syncs_failed     bigint NOT NULL DEFAULT 0,
    incidents        integer NOT NULL DEFAULT 0,
    incident_requests integer NOT NULL DEFAULT 0,
    incidents_last_success_at timestamptz
);
INSERT INTO @extschema@.sync_state DEFAULT VALUES;

-- Open PagerDuty incidents (triggered or acknowledged) with their assignees' emails, replaced
-- wholesale by each successful incident sync (pg_oncall.sync_incidents); what require_incident
-- rules and the notes on incidents go by. Not dumped: the next sync fills it again.
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

-- One row per elevation (a stretch of a session with a gated role current), written by the
-- worker from what backends queue (never in the user's transaction); read through the view
-- oncall.elevations.
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

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('@extschema@.gated_roles', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.identities', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.shifts', $$WHERE source = 'manual'$$);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.elevation_records', '');
