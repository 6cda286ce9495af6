//! DESIGN.md guarantee 1, roles reached through a gated role: a role that is not gated but
//! INHERITs a gated one answers to the gated role's rule; a role reached *only through* a
//! gated role (granted to it) answers to that rule too; a NOINHERIT intermediate reaches the
//! gated role's rights only by SET ROLE, which is gated.
//!
//! | case | test |
//! |---|---|
//! | a role that INHERITs the gated role (`SET ROLE helpers`), GRANT/REVOKE seen by open sessions, a NOINHERIT intermediate | `a_role_inheriting_a_gated_role_is_gated_by_its_rule` |
//! | roles granted TO the gated role (`SET ROLE pg_read_all_data`, `SET ROLE app_owner`, `OWNER TO app_owner`) (was bypass B0) | `roles_granted_to_the_gated_role_are_reached_only_through_its_gate` |

use e2e::*;

/// An ungated role that INHERITs a gated role hands out its privileges: `SET ROLE` to it is
/// gated by the gated role's rule, and a GRANT/REVOKE reaches sessions already open.
#[test]
fn a_role_inheriting_a_gated_role_is_gated_by_its_rule() {
    let t = team(&[]);
    let (cluster, mut admin) = (&t.cluster, t.cluster.connect());
    admin
        .batch_execute("CREATE ROLE helpers NOLOGIN INHERIT; GRANT prod_admin TO helpers; GRANT helpers TO alice, bob;")
        .unwrap();
    let mut bob = cluster.connect_as("bob");
    assert_refused(bob.batch_execute("SET ROLE helpers"), "helpers", BOB_EMAIL, "off-call bob, role inheriting prod_admin");
    let mut alice = cluster.connect_as("alice");
    alice.batch_execute("SET ROLE helpers").unwrap_or_else(|e| panic!("on-call alice: {}", error_text(&e)));
    assert_eq!(current_user(&mut alice), "helpers");
    // The chain is cut: bob's open session sees it at once (no snapshot change involved).
    admin.batch_execute("REVOKE prod_admin FROM helpers").unwrap();
    bob.batch_execute("SET ROLE helpers").unwrap_or_else(|e| panic!("helpers no longer inherits prod_admin: {}", error_text(&e)));
    bob.batch_execute("RESET ROLE").unwrap();
    // And restored: refused again in the same session.
    admin.batch_execute("GRANT prod_admin TO helpers").unwrap();
    assert_refused(bob.batch_execute("SET ROLE helpers"), "helpers", BOB_EMAIL, "after the GRANT, same session");
    // A NOINHERIT role only reaches prod_admin's privileges through SET ROLE, which is gated.
    admin.batch_execute("CREATE ROLE switchers NOLOGIN NOINHERIT; GRANT prod_admin TO switchers; GRANT switchers TO bob").unwrap();
    bob.batch_execute("SET ROLE switchers").unwrap_or_else(|e| panic!("NOINHERIT intermediate: {}", error_text(&e)));
    assert_refused(bob.batch_execute("SET ROLE prod_admin"), GATED, BOB_EMAIL, "from switchers on to prod_admin");
}

/// BYPASS B0 (notes/attacks.md), the most severe: the roles granted TO the gated role
/// (pg_read_all_data, an application's owner role...) are reachable by every member of it with
/// `SET ROLE`, because PostgreSQL's membership check recurses through prod_admin whatever
/// INHERIT says, and the gate only judges gated roles and roles that inherit them.
#[test]
fn roles_granted_to_the_gated_role_are_reached_only_through_its_gate() {
    let mut t = team(&[]);
    ok(
        t.admin.batch_execute(
            "GRANT pg_read_all_data TO prod_admin;
             CREATE ROLE app_owner NOLOGIN;
             CREATE TABLE public.app_data (x text); INSERT INTO public.app_data VALUES ('app-secret');
             ALTER TABLE public.app_data OWNER TO app_owner;
             GRANT app_owner TO prod_admin;",
        ),
        "prod_admin's powers come from its memberships",
    );
    let doctor: Vec<String> = t.admin.query("SELECT object || ': ' || problem FROM oncall.doctor()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let mut bob = t.connect_as("bob");
    let offset = t.cluster.log_len();
    let via_read_all = bob.batch_execute("SET ROLE pg_read_all_data").and_then(|_| bob.query("SELECT x FROM work.secret", &[]));
    let _ = bob.batch_execute("RESET ROLE");
    let via_owner = bob.batch_execute("SET ROLE app_owner").and_then(|_| bob.query("SELECT x FROM public.app_data", &[]));
    let _ = bob.batch_execute("RESET ROLE");
    ok(bob.batch_execute("CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql SECURITY DEFINER AS $$ SELECT x FROM public.app_data $$"), "f");
    let via_membership = bob.batch_execute("ALTER FUNCTION pg_temp.f() OWNER TO app_owner");
    let lines = decision_log_lines(&t.cluster, offset).len();
    assert!(
        via_read_all.is_err() && via_owner.is_err() && via_membership.is_err(),
        "off-call bob used roles granted to prod_admin: SET ROLE pg_read_all_data → {:?}; SET ROLE app_owner → {:?}; \
         ALTER FUNCTION … OWNER TO app_owner → {:?}; {lines} decision lines logged; doctor: {doctor:?}",
        via_read_all.map(|r| r.len()),
        via_owner.map(|r| r.len()),
        via_membership.is_ok()
    );
    assert_refused(via_read_all, "pg_read_all_data", BOB_EMAIL, "SET ROLE pg_read_all_data");
}
