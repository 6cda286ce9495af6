//! The PagerDuty token (DESIGN.md guarantee 5, "token secrecy", and the configuration): read
//! from its file (whitespace trimmed, re-read on reload; missing, empty or unreadable files
//! explained), never in any log — even at `log_min_messages = debug5`, even when PagerDuty
//! echoes it in an error — nor in `pg_settings`, `SHOW ALL`, `oncall.status()`,
//! `oncall.sync_state` or `pg_stat_activity` (`Cluster::assert_secret_hidden`, also called at
//! the end of every sync test). Roles that could read the token file: `doctor.rs`.
//!
//! | case | test |
//! |---|---|
//! | no token file, an empty one, an unreadable one, a good one (trimmed), a rotated one | `token_file_missing_empty_or_wrong` |
//! | syncs, a 401 and a reload at `debug5` with `log_statement = 'all'` | `token_never_logged_even_at_debug5` |

use e2e::*;
use fake_pagerduty::{oncall, FakePagerDuty};

#[test]
fn token_file_missing_empty_or_wrong() {
    let fake = FakePagerDuty::start(TOKEN).unwrap();
    fake.set_oncalls(vec![oncall("alice@example.com", "EP1", 1)]);
    let cluster = Cluster::builder().conf(&["pg_oncall.refresh_interval = '1h'"]).pagerduty(&fake.url(), None).start();
    let mut admin = cluster.connect();
    create_login_role(&mut admin, "alice@example.com");
    create_login_role(&mut admin, "carol@example.com");
    let mut alice = cluster.connect_as("alice@example.com");
    let mut carol = cluster.connect_as("carol@example.com");
    add_manual_shift(&mut admin, "carol@example.com");

    let err = try_refresh(&mut admin).expect_err("no token file: refresh fails");
    assert!(err.contains("pagerduty_token_file is not set"), "{err}");
    let st = sync_status(&mut admin);
    assert!(!st.token_configured);
    assert!(st.last_error.as_deref().unwrap_or_default().contains("pagerduty_token_file is not set"), "{st:?}");
    assert!(check_access(&mut carol), "manual shifts work without a token");
    assert!(fake.requests().is_empty(), "nothing sent without a token");

    let empty = cluster.raw_file("  \n\n");
    cluster.set_conf(&format!("pg_oncall.pagerduty_token_file = '{}'", empty.display()));
    cluster.reload();
    let err = try_refresh(&mut admin).expect_err("empty token file: refresh fails");
    assert!(err.contains("is empty"), "{err}");
    assert!(!sync_status(&mut admin).token_configured);

    cluster.set_conf("pg_oncall.pagerduty_token_file = '/nonexistent/e2e/pagerduty.token'");
    cluster.reload();
    let err = try_refresh(&mut admin).expect_err("unreadable token file: refresh fails");
    assert!(err.contains("cannot read the PagerDuty token file"), "{err}");
    assert!(!sync_status(&mut admin).token_configured);
    assert!(fake.requests().is_empty(), "nothing sent without a token");
    assert!(check_access(&mut carol));

    // A good token (whitespace around it is trimmed), picked up on reload.
    let good = cluster.raw_file(&format!("  {TOKEN}\t\n\n"));
    cluster.set_conf(&format!("pg_oncall.pagerduty_token_file = '{}'", good.display()));
    cluster.reload();
    cluster.refresh();
    let st = sync_status(&mut admin);
    assert!(st.token_configured && st.last_error.is_none(), "{st:?}");
    eventually("synced shifts grant", &cluster, || check_access(&mut alice));
    let requests = fake.requests();
    let auth = requests.last().and_then(|r| r.header("authorization"));
    assert_eq!(auth, Some(format!("Token token={TOKEN}").as_str()), "the trimmed token is sent");

    // A rotated token in the same file is re-read on reload.
    std::fs::write(&good, "e2eRotated-9Tz4\n").unwrap();
    cluster.reload();
    let err = try_refresh(&mut admin).expect_err("the fake does not know the rotated token");
    assert!(err.contains("rejected the API token"), "{err}");
    assert!(sync_status(&mut admin).token_configured, "a readable token file is configured, even if PagerDuty rejects it");
    assert!(check_access(&mut alice), "the previous rows stay");
    cluster.assert_secret_hidden(TOKEN);
    cluster.assert_secret_hidden("e2eRotated-9Tz4");
}

#[test]
fn token_never_logged_even_at_debug5() {
    let t = team(&["log_min_messages = debug5", "log_statement = 'all'"]);
    let mut admin = t.cluster.connect();
    ok(admin.batch_execute("SELECT oncall.refresh()"), "a sync at debug5");
    t.fake.set_token("another-token");
    assert!(admin.batch_execute("SELECT oncall.refresh()").is_err(), "a 401 at debug5");
    t.fake.set_token(TOKEN);
    ok(admin.batch_execute("SELECT oncall.refresh()"), "sync");
    t.cluster.reload();
    t.cluster.assert_secret_hidden(TOKEN);
}
