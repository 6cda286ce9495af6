#!/usr/bin/env bash
# `make demo`: pg_oncall end to end on a throw-away PostgreSQL cluster and a fake PagerDuty.
#
#   1. builds and starts the fake PagerDuty (127.0.0.1, a free port) with a schedule where, in
#      escalation policy PDEMO01, alice is on call now (level 1), bob goes on call two minutes
#      from now (level 1) and carol is on call now at level 3 (the whole team);
#   2. starts a cluster (as the `postgres` OS user when run as root) with pg_oncall preloaded,
#      pointed at the fake, max_escalation_level = 2, refresh_interval = 30s, and notes on
#      incidents on (a write token the fake accepts, pg-oncall@example.com as the From user);
#   3. walks through the SQL API with real psql sessions (the SQL is echoed, the output is psql's),
#      ending with a role only for whoever PagerDuty assigned an open incident (require_incident)
#      and the note alice's elevation put on her incident, as the fake received it;
#   4. leaves both running and prints how to connect and how to stop them
#      (bash scripts/demo-stop.sh).
#
# Re-running is safe: the previous demo is stopped and its directory replaced. Non-interactive.
#
# Environment:
#   PG_CONFIG            default /usr/lib/postgresql/15/bin/pg_config (the extension must be installed
#                        there: make demo makes a private tree of the major, PG=15|17|18, with it)
#   PG_ONCALL_CHROOT     the root file system the server's programs run in (scripts/provision.sh;
#                        PostgreSQL 17 here), or empty
#   DEMO_SKIP_BUILD=1    do not run `cargo build` for the fake PagerDuty if its binary already exists
#   PG_ONCALL_DEMO_DIR   where the cluster, the logs and the token live (default <repo>/.demo, or
#                        /tmp/pg_oncall-demo when the `postgres` OS user cannot traverse to the repo)
#   CARGO_TARGET_DIR     where cargo puts the fake PagerDuty binary (default <repo>/target)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
STARTED_AT=$(date +%s)

STEP="preflight"
N=0
UNEXPECTED=()
LAST=""

step() {
    N=$((N + 1))
    STEP="$N. $*"
    echo
    echo "==> $STEP"
}
info() { echo "    $*"; }
# die, IS_ROOT, as_postgres, pg_client, new_token_file, start_fake_pagerduty, start_on_free_port
LIB_NAME=demo
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo >&2
        echo "demo: FAILED during step \"$STEP\" (exit $rc)." >&2
        if [ -n "${DEMO_DIR:-}" ] && [ -d "$DEMO_DIR" ]; then
            for log in server.log fake-pagerduty.log commands.log; do
                [ ! -f "$DEMO_DIR/$log" ] || echo "demo: log: $DEMO_DIR/$log" >&2
            done
            if [ -f "$DEMO_DIR/server.log" ]; then
                echo "demo: last lines of the server log:" >&2
                tail -n 20 "$DEMO_DIR/server.log" | sed 's/^/    /' >&2
            fi
        fi
        echo "demo: anything already started keeps running; stop it with: bash scripts/demo-stop.sh" >&2
    fi
}
trap on_exit EXIT

# ---------------------------------------------------------------- preflight

command -v "$PG_CONFIG" >/dev/null 2>&1 || [ -x "$PG_CONFIG" ] || die "pg_config not found at $PG_CONFIG (run make setup)"
BINDIR=$("$PG_CONFIG" --bindir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
SHAREDIR=$("$PG_CONFIG" --sharedir)
for prog in initdb pg_ctl psql; do
    [ -x "$BINDIR/$prog" ] || die "$BINDIR/$prog is missing (run make setup)"
done
[ -f "$PKGLIBDIR/pg_oncall.so" ] && [ -f "$SHAREDIR/extension/pg_oncall.control" ] ||
    die "pg_oncall is not installed into $PKGLIBDIR (run make install, or make demo)"
if [ -n "$IS_ROOT" ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql-15)"
    command -v runuser >/dev/null || die "runuser is missing (util-linux)"
fi

if [ -n "${PG_ONCALL_DEMO_DIR:-}" ]; then
    DEMO_DIR=$PG_ONCALL_DEMO_DIR
    DIR_NOTE="(PG_ONCALL_DEMO_DIR)"
elif [ -z "$IS_ROOT" ] || as_postgres test -x "$REPO"; then
    DEMO_DIR=$REPO/.demo
    DIR_NOTE="(git-ignored)"
else
    DEMO_DIR=/tmp/pg_oncall-demo
    DIR_NOTE="(the server cannot reach $REPO, so the cluster lives in /tmp)"
fi
case "$DEMO_DIR" in /*) ;; *) die "PG_ONCALL_DEMO_DIR must be an absolute path" ;; esac
# Unix socket paths are limited to 107 bytes: "<dir>/.s.PGSQL.<port>".
[ "${#DEMO_DIR}" -le 80 ] || die "the demo directory path is too long for a Unix socket: $DEMO_DIR (set PG_ONCALL_DEMO_DIR to a shorter path)"

MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
echo "pg_oncall demo: $(pg_client "$BINDIR/postgres" --version), demo directory $DEMO_DIR $DIR_NOTE"

# ---------------------------------------------------------------- 1. clean slate

step "Stopping a previous demo, if any"
PG_ONCALL_DEMO_DIR=${PG_ONCALL_DEMO_DIR:-} bash "$REPO/scripts/demo-stop.sh" | sed 's/^/    /'
if [ -L "$DEMO_DIR" ]; then
    die "$DEMO_DIR is a symbolic link; refusing to use it"
fi
if [ -d "$DEMO_DIR" ]; then
    if [ -f "$DEMO_DIR/.pg_oncall-demo" ] || [ -z "$(ls -A "$DEMO_DIR")" ]; then
        rm -rf "$DEMO_DIR"
    else
        die "$DEMO_DIR exists and is not a pg_oncall demo directory; refusing to delete it"
    fi
fi
mkdir -p "$DEMO_DIR"
chmod 0755 "$DEMO_DIR"
echo "pg_oncall demo directory, created by scripts/demo.sh; deleted by the next run" >"$DEMO_DIR/.pg_oncall-demo"
info "fresh directory $DEMO_DIR"

# ---------------------------------------------------------------- 2. fake PagerDuty

TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$REPO/$TARGET_DIR ;; esac
FAKE_BIN=$TARGET_DIR/release/fake-pagerduty
step "Building the fake PagerDuty (cargo build --release -p fake-pagerduty)"
if [ "${DEMO_SKIP_BUILD:-}" = 1 ] && [ -x "$FAKE_BIN" ]; then
    info "DEMO_SKIP_BUILD=1 and $FAKE_BIN exists: not rebuilding"
else
    (cd "$REPO" && cargo build --release -p fake-pagerduty 2>&1) | sed 's/^/    /'
    [ -x "$FAKE_BIN" ] || die "cargo build did not produce $FAKE_BIN"
fi

step "Starting the fake PagerDuty with the demo schedule"
TOKEN_FILE=$DEMO_DIR/pagerduty.token
WRITE_TOKEN_FILE=$DEMO_DIR/pagerduty-write.token
new_token_file "$TOKEN_FILE" demo
new_token_file "$WRITE_TOKEN_FILE" demo-write
# The user notes on incidents are posted as (the From header): a user of the account.
echo '[{"email": "pg-oncall@example.com", "name": "pg_oncall"}]' >"$DEMO_DIR/users.json"
bash "$REPO/scripts/demo-schedule.sh" >"$DEMO_DIR/schedule.json"
BOB_START=$(grep -A2 '"bob@example.com"' "$DEMO_DIR/schedule.json" | sed -n 's/.*"start": "\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$BOB_START" ] || die "could not read bob's start from $DEMO_DIR/schedule.json"
BOB_START_LOCAL=$(date -d "$BOB_START" '+%H:%M:%S %Z')
BOB_START_EPOCH=$(date -d "$BOB_START" +%s)

start_fake_pagerduty "$FAKE_BIN" "$TOKEN_FILE" "$DEMO_DIR/schedule.json" "$DEMO_DIR/fake-pagerduty.log" \
    --write-token-file "$WRITE_TOKEN_FILE" --users "$DEMO_DIR/users.json"
echo "$FAKE_PID" >"$DEMO_DIR/fake-pagerduty.pid"
info "fake PagerDuty: $FAKE_URL (pid $FAKE_PID; read-only token in $TOKEN_FILE, write token for notes in"
info "  $WRITE_TOKEN_FILE, both mode 0600)"
info "schedule (escalation policy PDEMO01, $DEMO_DIR/schedule.json):"
info "  alice@example.com  level 1  on call now, until $(date -d '+8 hours' '+%H:%M %Z')"
info "  bob@example.com    level 1  goes on call at $BOB_START_LOCAL (two minutes from now)"
info "  carol@example.com  level 3  on call now (the whole team: excluded by max_escalation_level = 2)"

# ---------------------------------------------------------------- 3. the cluster

step "Creating a PostgreSQL $MAJOR cluster in $DEMO_DIR/data${IS_ROOT:+ (owned by and running as the postgres OS user)}"
[ -z "$IS_ROOT" ] || chown -R postgres:postgres "$DEMO_DIR"
if [ -n "$IS_ROOT" ] && ! as_postgres test -r "$TOKEN_FILE"; then
    die "the postgres OS user cannot reach $DEMO_DIR; set PG_ONCALL_DEMO_DIR to a directory it can traverse"
fi
(cd "$DEMO_DIR" && as_postgres timeout 120 "$BINDIR/initdb" -D "$DEMO_DIR/data" -A trust -U postgres \
    -E UTF8 --locale=C -N) >"$DEMO_DIR/commands.log" 2>&1 ||
    die "initdb failed: $(tail -n 20 "$DEMO_DIR/commands.log")"
cat >"$DEMO_DIR/data/pg_hba.conf" <<'HBA'
# pg_oncall demo: trust on the Unix socket and on 127.0.0.1 only (a throw-away local cluster)
local all all              trust
host  all all 127.0.0.1/32 trust
HBA
cat >>"$DEMO_DIR/data/postgresql.conf" <<CONF

# ---- pg_oncall demo (scripts/demo.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DEMO_DIR'
shared_preload_libraries = 'pg_oncall'
pg_oncall.database = 'postgres'
pg_oncall.pagerduty_api_url = '$FAKE_URL'
pg_oncall.pagerduty_token_file = '$TOKEN_FILE'
pg_oncall.max_escalation_level = 2
pg_oncall.refresh_interval = '30s'
cluster_name = 'pg_oncall-demo'
pg_oncall.annotate_incidents = on
pg_oncall.pagerduty_write_token_file = '$WRITE_TOKEN_FILE'
pg_oncall.pagerduty_from_email = 'pg-oncall@example.com'
log_line_prefix = '%m [%p] %q%u@%d '
CONF
[ -z "$IS_ROOT" ] || chown postgres:postgres "$DEMO_DIR/data/pg_hba.conf"

start_on_free_port "$DEMO_DIR/data" "$DEMO_DIR/server.log" "$DEMO_DIR/commands.log" \
    as_postgres timeout 90 "$BINDIR/pg_ctl" -D "$DEMO_DIR/data" -l "$DEMO_DIR/server.log" -w -t 60 start

cat >"$DEMO_DIR/demo.env" <<ENV
# written by scripts/demo.sh; read by demo-stop.sh and demo-schedule.sh --apply
DEMO_DIR='$DEMO_DIR'
DEMO_PG_PORT=$PORT
DEMO_FAKE_URL='$FAKE_URL'
DEMO_BINDIR='$BINDIR'
DEMO_CHROOT='$PG_ONCALL_CHROOT'
DEMO_BOB_STARTS_AT='$BOB_START'
ENV

conninfo() { echo "host=127.0.0.1 port=$PORT dbname=postgres user=$1"; }
# A quiet query (not part of the walk-through): prints the value.
q() {
    PGCONNECT_TIMEOUT=5 pg_client timeout 30 "$BINDIR/psql" -X -qAt -v ON_ERROR_STOP=1 "$(conninfo "${2:-postgres}")" -c "$1" 2>/dev/null
}
info "PostgreSQL is up on 127.0.0.1:$PORT and the Unix socket in $DEMO_DIR (server log $DEMO_DIR/server.log)"
info "postgresql.conf:"
sed -n '/^# ---- pg_oncall demo/,$p' "$DEMO_DIR/data/postgresql.conf" | sed '1d; s/^/      /'

# run_sql USER [error-ok] <<'SQL' ... SQL
# Runs the script in one psql session as USER, echoing every line (-a) before its output.
# With error-ok, a failing statement does not stop psql (nor this script): the refusals are the point.
run_sql() {
    local user=$1 mode=${2:-} sql out rc=0 stop=1
    [ "$mode" = error-ok ] && stop=0
    sql=$(cat)
    echo "    \$ psql \"$(conninfo "$user")\""
    out=$(printf '%s\n' "$sql" | PGCONNECT_TIMEOUT=10 pg_client timeout 60 "$BINDIR/psql" -X -a -v ON_ERROR_STOP=$stop \
        -v VERBOSITY=default -P pager=off -P footer=on "$(conninfo "$user")" 2>&1) || rc=$?
    printf '%s\n' "$out" | sed 's/^/    | /'
    LAST=$out
    [ "$rc" -eq 0 ] || die "psql as $user failed (exit $rc)"
}

# expect REGEX DESCRIPTION: checks the last run_sql output (the demo must show what it says).
expect() {
    if grep -qE -- "$1" <<<"$LAST"; then
        info "[ok] $2"
    else
        info "[!!] UNEXPECTED: not seen: $2"
        UNEXPECTED+=("$2")
    fi
}

# ---------------------------------------------------------------- 4. walk-through

step "CREATE EXTENSION and the pg_oncall settings"
run_sql postgres <<'SQL'
CREATE EXTENSION pg_oncall;
SELECT name, setting FROM pg_settings WHERE name LIKE 'pg_oncall.%' ORDER BY name;
SQL

step "Roles: alice, bob and carol log in (NOINHERIT); prod_admin is the privileged role (NOLOGIN)"
run_sql postgres <<'SQL'
CREATE ROLE alice LOGIN NOINHERIT;
CREATE ROLE bob   LOGIN NOINHERIT;
CREATE ROLE carol LOGIN NOINHERIT;
CREATE ROLE prod_admin NOLOGIN;
GRANT prod_admin TO alice, bob, carol;
SQL

step "Gate prod_admin on escalation policy PDEMO01, and map the roles to their PagerDuty emails"
run_sql postgres <<'SQL'
SELECT oncall.gate_role('prod_admin', escalation_policy_ids => '{PDEMO01}');
INSERT INTO oncall.identities VALUES
    ('alice', 'alice@example.com'),
    ('bob',   'bob@example.com'),
    ('carol', 'carol@example.com');
SELECT * FROM oncall.gated_roles;
SQL

# The sync worker starts with the server and picks up CREATE EXTENSION; wait for it (bounded).
for _ in $(seq 300); do # up to 30 s
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_oncall sync'" || true)" = 1 ] && break
    sleep 0.1
done
[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_oncall sync'" || true)" = 1 ] ||
    die "the pg_oncall sync worker is not running after 30 s"

step "Sync from PagerDuty now, then look at the sync's health (oncall.status())"
run_sql postgres <<'SQL'
SELECT oncall.refresh();
\x on
SELECT * FROM oncall.status();
SQL
expect 'last_error +\| *$' "the sync succeeded (last_error is empty)"

step "The synced shifts (oncall.shifts; bob's starts in the future, carol's is level 3)"
run_sql postgres <<'SQL'
SELECT * FROM oncall.shifts ORDER BY escalation_level, starts_at;
SQL
expect '\(3 rows\)' "three shifts synced"

# Decisions come from shared memory, updated within a second of each commit: wait (bounded)
# until the gate sees the rule and the shifts, so the refusals below are the gate's real answer.
for _ in $(seq 100); do # up to 10 s
    [ "$(q "SELECT oncall.check_oncall_access('prod_admin')" alice || true)" = t ] &&
        [ "$(q "SELECT oncall.check_oncall_access('prod_admin')" bob || true)" = f ] && break
    sleep 0.1
done

step "bob is not on call yet: SET ROLE prod_admin is refused"
run_sql bob error-ok <<'SQL'
SET ROLE prod_admin;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT current_user, session_user;
SQL
expect 'permission denied to set role' "bob refused"
expect 'SQLSTATE 42501' "SQLSTATE 42501 (insufficient_privilege)"

step "alice is on call (level 1, PDEMO01): SET ROLE prod_admin works"
run_sql alice <<'SQL'
SET ROLE prod_admin;
SELECT current_user, session_user;
RESET ROLE;
SQL
expect '^ *prod_admin +\| +alice' "alice's current_user is prod_admin"

step "carol is on call only at level 3 (the whole team), above pg_oncall.max_escalation_level = 2: refused"
run_sql carol error-ok <<'SQL'
SET ROLE prod_admin;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT current_user, session_user;
SQL
expect 'permission denied to set role' "carol refused"

step "Row-level security: incidents are visible only to whoever is on call right now"
run_sql postgres <<'SQL'
CREATE TABLE incidents (id int PRIMARY KEY, title text NOT NULL, severity text NOT NULL);
INSERT INTO incidents VALUES
    (1, 'checkout latency p99 > 2s', 'SEV2'),
    (2, 'replica lag on db-prod-3',  'SEV3');
ALTER TABLE incidents ENABLE ROW LEVEL SECURITY;
CREATE POLICY on_call_only ON incidents FOR SELECT
    USING ((SELECT oncall.check_oncall_access()));
GRANT SELECT ON incidents TO alice, bob, carol, prod_admin;
SQL
info "as alice (on call):"
run_sql alice <<'SQL'
SELECT * FROM incidents ORDER BY id;
SQL
expect '\(2 rows\)' "alice sees the incidents"
info "as bob (not on call yet):"
run_sql bob <<'SQL'
SELECT * FROM incidents ORDER BY id;
SQL
expect '\(0 rows\)' "bob sees no rows"

step "oncall.whoami(): who the gate thinks you are"
run_sql alice <<'SQL'
\x on
SELECT * FROM oncall.whoami();
SQL
expect 'assumable_roles +\| \{prod_admin\}' "alice can assume prod_admin"
run_sql bob <<'SQL'
\x on
SELECT * FROM oncall.whoami();
SQL
expect 'on_call +\| f' "bob is not on call"

step "oncall.doctor(): setup lint"
info "Members are NOINHERIT and prod_admin is NOLOGIN, so nobody reaches its privileges without"
info "SET ROLE (and so without the gate); the token is configured and the sync is fresh: no findings."
run_sql postgres <<'SQL'
SELECT * FROM oncall.doctor();
SQL
expect '\(0 rows\)' "doctor finds nothing"
info "What it would report: a member created the default way (INHERIT) with no identity"
info "(in a transaction that is rolled back):"
run_sql postgres <<'SQL'
BEGIN;
CREATE ROLE mallory LOGIN;
GRANT prod_admin TO mallory;
\x on
SELECT * FROM oncall.doctor();
ROLLBACK;
SQL
expect 'inherits the privileges of gated role' "doctor flags an INHERIT member"

step "Incidents: incident_admin is only for whoever PagerDuty assigned an open incident (require_incident)"
run_sql postgres <<'SQL'
CREATE ROLE incident_admin NOLOGIN;
GRANT incident_admin TO alice, bob;
SELECT oncall.gate_role('incident_admin', escalation_policy_ids => '{PDEMO01}', require_incident => true);
SQL
info "PagerDuty assigns alice an incident on a service of PDEMO01 (through the fake's admin API):"
INCIDENT='{"id": "PDEMOINC", "service_id": "PDEMOSVC", "escalation_policy_id": "PDEMO01", "title": "checkout latency p99 > 2s", "assignees": ["alice@example.com"]}'
ADDED=$(curl -fsS --max-time 10 -X POST --data-binary "$INCIDENT" "$FAKE_URL/_admin/incidents") ||
    die "the fake PagerDuty did not take the incident"
info "  POST $FAKE_URL/_admin/incidents $INCIDENT"
info "  -> $ADDED"
info "The next sync (here: oncall.refresh()) fetches the open incidents along with the shifts:"
run_sql postgres <<'SQL'
SELECT oncall.refresh();
SELECT id, incident_number, title, status, escalation_policy_id, assignee_emails FROM oncall.incidents;
SQL
expect 'PDEMOINC .*\{alice@example.com\}' "the incident is synced, assigned to alice"
for _ in $(seq 100); do # up to 10 s: the rule and the incident reach the snapshot
    [ "$(q "SELECT oncall.check_oncall_access('incident_admin')" alice || true)" = t ] && break
    sleep 0.1
done

step "alice is on call and assigned to PDEMOINC: she says why, and assumes incident_admin"
run_sql alice <<'SQL'
SET pg_oncall.reason = 'PDEMOINC: checkout latency p99 > 2s';
SET ROLE incident_admin;
SELECT current_user, session_user;
SELECT incident_ids FROM oncall.whoami();
RESET ROLE;
SQL
expect '^ *incident_admin +\| +alice' "alice's current_user is incident_admin"
expect '\{PDEMOINC\}' "whoami() names her incident"

step "bob is on call (here by a break-glass override) but no incident is assigned to him: refused"
run_sql postgres <<'SQL'
SELECT oncall.override('bob@example.com', '10 minutes', 'demo: on call, without an incident');
SQL
for _ in $(seq 100); do # up to 10 s
    [ "$(q "SELECT oncall.check_oncall_access()" bob || true)" = t ] && break
    sleep 0.1
done
run_sql bob error-ok <<'SQL'
SET ROLE incident_admin;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SQL
expect 'permission denied to set role "incident_admin"' "bob refused"
expect 'requires an open PagerDuty incident' "the DETAIL says an incident is missing"
info "(An override makes someone on call, not assigned. Removing bob's override again, so that the rest"
info "of the demo — bob's shift starting in two minutes — holds:)"
run_sql postgres <<'SQL'
DELETE FROM oncall.shifts WHERE source = 'manual' AND email = 'bob@example.com';
SQL

step "The note alice's elevation put on PDEMOINC, as the fake PagerDuty received it"
info "pg_oncall.annotate_incidents = on: the gate queued the note in shared memory; the sync worker"
info "posted it (POST /incidents/PDEMOINC/notes, From: pg-oncall@example.com, the write token):"
NOTES=""
for _ in $(seq 100); do # up to 10 s
    NOTES=$(curl -fsS --max-time 5 "$FAKE_URL/_admin/notes" || true)
    case "$NOTES" in *'"content"'*) break ;; esac
    sleep 0.1
done
info "  GET $FAKE_URL/_admin/notes"
printf '%s\n' "$NOTES" | sed 's/},{/},\n{/g; s/^/    | /'
LAST=$NOTES
expect '"from":"pg-oncall@example.com"' "the note came From pg-oncall@example.com"
expect 'alice@example.com assumed incident_admin on pg_oncall-demo/postgres at [0-9T:.-]+Z; reason: PDEMOINC: checkout latency' "the note names who, which role, where, when and why"
run_sql postgres <<'SQL'
\x on
SELECT requests, incidents, incident_requests, notes_enabled, notes_posted, notes_failed, notes_dropped, last_note_error
  FROM oncall.status();
SQL
expect 'notes_posted +\| 1$' "status() counts the note posted"

step "The audit trail: pg_oncall's allow/deny lines in the server log ($DEMO_DIR/server.log)"
sleep 0.3 # let the last backends' lines reach the log file
AUDIT=$(grep -E 'pg_oncall: (allow|deny|audit_deny) ' "$DEMO_DIR/server.log" | tail -n 20 || true)
if [ -n "$AUDIT" ]; then
    printf '%s\n' "$AUDIT" | sed 's/^/    /'
    LAST=$AUDIT
    expect 'pg_oncall: deny role=prod_admin session_user=bob' "bob's denial is logged"
    expect 'pg_oncall: allow role=prod_admin session_user=alice' "alice's elevation is logged"
else
    info "[!!] UNEXPECTED: no pg_oncall allow/deny lines in the server log"
    UNEXPECTED+=("audit lines in the server log")
fi

# ---------------------------------------------------------------- 5. what is left running

ELAPSED=$(($(date +%s) - STARTED_AT))
RUN_AS="OS user $(id -un)"
[ -z "$IS_ROOT" ] || RUN_AS="the postgres OS user"
step "The demo is still running (took ${ELAPSED} s)"
cat <<EOF
    PostgreSQL $MAJOR  127.0.0.1:$PORT (and the Unix socket in $DEMO_DIR), data $DEMO_DIR/data,
                   log $DEMO_DIR/server.log, running as $RUN_AS
    fake PagerDuty $FAKE_URL (pid $FAKE_PID), log $DEMO_DIR/fake-pagerduty.log

    Connect as alice (on call now):
      psql "$(conninfo alice)"
    Connect as bob:
      psql "$(conninfo bob)"
    (or over the Unix socket: psql "host=$DEMO_DIR port=$PORT dbname=postgres user=bob")

    alice may also SET ROLE incident_admin while PDEMOINC is open; resolve it and see her refused
    (at the next sync, or at once with SELECT oncall.refresh(); as postgres):
      curl -X POST $FAKE_URL/_admin/incidents/PDEMOINC/resolve
    Notes her elevations put on it: curl $FAKE_URL/_admin/notes

    bob's shift starts at $BOB_START_LOCAL, two minutes after the demo started: connect as bob and run
      SET ROLE prod_admin;
    before and after that time (refused, then allowed; the shift is already synced, so no refresh
    is needed). Then try SELECT * FROM oncall.whoami(); and SELECT * FROM incidents;
    (the RLS policy follows the session user: bob sees the incidents from his shift start on)
    To restart bob's two-minute countdown:  bash scripts/demo-schedule.sh --apply

    Stop everything (cluster and fake PagerDuty; safe to run twice):
      bash scripts/demo-stop.sh
EOF
if [ "$(date +%s)" -ge "$BOB_START_EPOCH" ]; then
    info "(note: this run took longer than two minutes, so bob's shift has already started)"
fi

if [ "${#UNEXPECTED[@]}" -gt 0 ]; then
    echo
    echo "demo: finished, but these did not look as expected:" >&2
    printf '    - %s\n' "${UNEXPECTED[@]}" >&2
    exit 1
fi
echo
echo "==> demo finished: everything behaved as described"
