//! `make demo` end to end: runs `scripts/demo.sh` (as `make demo` does after `make install`),
//! checks what it shows (bob refused with 42501, alice's `current_user` = prod_admin, carol
//! refused, the RLS rows for alice and none for bob, alice assuming incident_admin with her
//! incident and bob refused without one, the note on the incident, the connect and stop
//! commands), connects to the cluster it leaves running, then stops it with
//! `scripts/demo-stop.sh` (twice: it must be idempotent) and checks that the cluster and the
//! fake PagerDuty are gone.
//!
//! The demo runs in its own directory under /tmp (`PG_ONCALL_DEMO_DIR`), so a developer's own
//! `make demo` in `<repo>/.demo` keeps running. The demo builds the fake PagerDuty as `make demo`
//! does (cargo: quick when it is up to date). Runs the demo from the installation under test
//! (`PG_CONFIG`, and `PG_ONCALL_CHROOT` when its servers run in a root: see the harness).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{error_text, wait_until};
use postgres::{Client, Config, NoTls};

/// The whole demo, fake PagerDuty build included when its binary is missing.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
}

struct Output {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn all(&self) -> String {
        format!("--- stdout:\n{}\n--- stderr:\n{}", self.stdout, self.stderr)
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Runs `bash scripts/<script>` from the repository root with the demo's environment, bounded
/// by `timeout` (then killed). Its stdout and stderr are pipes: the script must not leave them
/// open in the processes it leaves running (the fake, the postmaster), or `make demo | tee`
/// would hang; reading them to the end within 10 s of its exit checks that.
fn run_script(script: &str, demo_dir: &Path, timeout: Duration) -> Output {
    let mut child: Child = Command::new("bash")
        .arg(format!("scripts/{script}"))
        .current_dir(repo_root())
        .env("PG_ONCALL_DEMO_DIR", demo_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
    let stdout = reader(child.stdout.take().unwrap());
    let stderr = reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for the script") {
            Some(status) => break status.code(),
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!("scripts/{script} did not finish within {timeout:?}; killed");
                break None;
            }
        }
    };
    let collect = |rx: mpsc::Receiver<String>, what: &str| {
        rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
            format!("<{what} still open 10 s after scripts/{script} exited: a process it started inherited it>")
        })
    };
    Output { status, stdout: collect(stdout, "stdout"), stderr: collect(stderr, "stderr") }
}

/// Stops whatever the demo left running and removes its directory, even when the test fails.
struct DemoGuard {
    dir: PathBuf,
}

impl Drop for DemoGuard {
    fn drop(&mut self) {
        let out = run_script("demo-stop.sh", &self.dir, STOP_TIMEOUT);
        if out.status != Some(0) {
            eprintln!("demo-stop.sh during cleanup failed:\n{}", out.all());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The text of the demo step whose `==> N. title` header contains `title`, up to the next header.
fn section<'a>(out: &'a str, title: &str) -> &'a str {
    let start = out
        .match_indices("==> ")
        .map(|(i, _)| i)
        .find(|&i| out[i..].lines().next().is_some_and(|l| l.contains(title)))
        .unwrap_or_else(|| panic!("no step titled {title:?} in the demo output:\n{out}"));
    let body = &out[start + 4..];
    match body.find("\n==> ") {
        Some(end) => &out[start..start + 4 + end],
        None => &out[start..],
    }
}

/// Is there a psql table row (within the demo's `    | ` prefix) whose cells are exactly `cells`?
fn has_row(text: &str, cells: &[&str]) -> bool {
    text.lines().any(|line| {
        let got: Vec<&str> = line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect();
        got == cells
    })
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
            .unwrap_or(false)
}

fn connect(port: u16, user: &str) -> Result<Client, postgres::Error> {
    Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10))
        .connect(NoTls)
}

#[test]
fn make_demo_runs_and_stops() {
    let dir = PathBuf::from(format!("/tmp/pg_oncall-demo-e2e-{}", std::process::id()));
    let _guard = DemoGuard { dir: dir.clone() };

    let started = Instant::now();
    let out = run_script("demo.sh", &dir, DEMO_TIMEOUT);
    let took = started.elapsed();
    eprintln!("scripts/demo.sh took {took:?}");
    let all = out.all();
    assert_eq!(out.status, Some(0), "scripts/demo.sh failed:\n{all}");
    assert!(!out.stdout.contains("still open 10 s after"), "{}", out.stdout);
    assert!(!out.stderr.contains("still open 10 s after"), "{}", out.stderr);
    let stdout = &out.stdout;

    // bob is not on call yet: refused, with the SQLSTATE.
    let bob = section(stdout, "bob is not on call yet");
    assert!(bob.contains(r#"ERROR:  pg_oncall: permission denied to set role "prod_admin" for bob"#), "{bob}");
    assert!(bob.contains("DETAIL:") && bob.contains("HINT:"), "the refusal has a DETAIL and a HINT:\n{bob}");
    assert!(bob.contains("SQLSTATE 42501"), "{bob}");
    assert!(has_row(bob, &["bob", "bob"]), "bob's current_user stays bob:\n{bob}");

    // alice is on call: SET ROLE works.
    let alice = section(stdout, "alice is on call");
    assert!(!alice.contains("ERROR"), "{alice}");
    assert!(has_row(alice, &["prod_admin", "alice"]), "alice's current_user is prod_admin:\n{alice}");

    // carol is on call at level 3 only: refused.
    let carol = section(stdout, "carol is on call only at level 3");
    assert!(carol.contains(r#"ERROR:  pg_oncall: permission denied to set role "prod_admin" for carol"#), "{carol}");
    assert!(carol.contains("SQLSTATE 42501"), "{carol}");
    assert!(has_row(carol, &["carol", "carol"]), "{carol}");

    // RLS: alice sees the incidents, bob none.
    let rls = section(stdout, "Row-level security");
    let (as_alice, as_bob) = rls
        .split_once(r#"user=bob""#)
        .unwrap_or_else(|| panic!("no psql session as bob in the RLS step:\n{rls}"));
    let as_alice = as_alice.split_once(r#"user=alice""#).map_or("", |(_, a)| a);
    assert!(has_row(as_alice, &["1", "checkout latency p99 > 2s", "SEV2"]), "alice sees the incidents:\n{rls}");
    assert!(as_alice.contains("(2 rows)"), "{rls}");
    assert!(as_bob.contains("(0 rows)") && !as_bob.contains("checkout latency"), "bob sees no rows:\n{rls}");

    // whoami, doctor, the audit lines.
    let whoami = section(stdout, "oncall.whoami()");
    assert!(has_row(whoami, &["assumable_roles", "{prod_admin}"]), "{whoami}");
    assert!(has_row(whoami, &["on_call", "f"]), "{whoami}");
    let doctor = section(stdout, "oncall.doctor()");
    assert!(doctor.contains("(0 rows)"), "doctor is clean for the demo's setup:\n{doctor}");
    // Incidents: alice, assigned, assumes incident_admin with a reason; bob, on call without an
    // incident, is refused; the note on the incident as the fake PagerDuty received it.
    let assigned = section(stdout, "alice is on call and assigned to PDEMOINC");
    assert!(!assigned.contains("ERROR"), "{assigned}");
    assert!(has_row(assigned, &["incident_admin", "alice"]), "alice's current_user is incident_admin:\n{assigned}");
    assert!(has_row(assigned, &["{PDEMOINC}"]), "whoami() names the incident:\n{assigned}");
    let unassigned = section(stdout, "no incident is assigned to him");
    assert!(unassigned.contains(r#"ERROR:  pg_oncall: permission denied to set role "incident_admin" for bob"#), "{unassigned}");
    assert!(unassigned.contains("requires an open PagerDuty incident"), "{unassigned}");
    assert!(unassigned.contains("SQLSTATE 42501"), "{unassigned}");
    let note = section(stdout, "The note alice's elevation put on PDEMOINC");
    assert!(note.contains(r#""from":"pg-oncall@example.com""#), "{note}");
    assert!(note.contains("alice@example.com assumed incident_admin on pg_oncall-demo/postgres at "), "{note}");
    assert!(note.contains("; reason: PDEMOINC: checkout latency p99 > 2s"), "{note}");
    assert!(has_row(note, &["notes_posted", "1"]), "{note}");
    let audit = section(stdout, "audit trail");
    assert!(audit.contains("pg_oncall: deny role=prod_admin session_user=bob"), "{audit}");
    assert!(audit.contains("pg_oncall: allow role=prod_admin session_user=alice"), "{audit}");
    assert!(audit.contains("pg_oncall: deny role=prod_admin session_user=carol"), "{audit}");
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");

    // What is left running, and how to reach it and stop it.
    let port: u16 = stdout
        .lines()
        .find_map(|l| {
            let rest = l.trim().strip_prefix(r#"psql "host=127.0.0.1 port="#)?;
            let (port, tail) = rest.split_once(' ')?;
            (tail == r#"dbname=postgres user=alice""#).then(|| port.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no `psql \"host=127.0.0.1 port=N dbname=postgres user=alice\"` line:\n{stdout}"));
    assert!(stdout.contains(&format!(r#"psql "host=127.0.0.1 port={port} dbname=postgres user=bob""#)), "{stdout}");
    assert!(stdout.contains("bash scripts/demo-stop.sh"), "{stdout}");
    assert!(stdout.contains("SET ROLE prod_admin"), "{stdout}");

    // The cluster is live: the worker runs, it still syncs from the fake, and the gate decides.
    let mut admin = connect(port, "postgres").unwrap_or_else(|e| panic!("connect to the demo cluster: {}", error_text(&e)));
    let workers: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_oncall sync'", &[])
        .unwrap()
        .get(0);
    assert_eq!(workers, 1, "the sync worker runs");
    admin
        .batch_execute("SELECT oncall.refresh()")
        .unwrap_or_else(|e| panic!("the fake PagerDuty still answers: {}", error_text(&e)));
    let mut alice = connect(port, "alice").expect("connect as alice");
    alice
        .batch_execute("SET ROLE prod_admin")
        .unwrap_or_else(|e| panic!("alice may SET ROLE prod_admin: {}", error_text(&e)));
    let current: String = alice.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    assert_eq!(current, "prod_admin");
    let mut carol = connect(port, "carol").expect("connect as carol");
    let err = carol.batch_execute("SET ROLE prod_admin").expect_err("carol is refused");
    assert_eq!(err.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{}", error_text(&err));
    drop((admin, alice, carol));

    let data = dir.join("data");
    assert!(data.join("postmaster.pid").exists(), "the postmaster runs in {}", data.display());
    let fake_pid: u32 = std::fs::read_to_string(dir.join("fake-pagerduty.pid"))
        .expect("fake-pagerduty.pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(pid_alive(fake_pid), "the fake PagerDuty runs");

    // Stop: the cluster and the fake are gone; a second stop is harmless.
    let stop = run_script("demo-stop.sh", &dir, STOP_TIMEOUT);
    assert_eq!(stop.status, Some(0), "demo-stop.sh failed:\n{}", stop.all());
    assert!(!data.join("postmaster.pid").exists(), "postmaster.pid is gone:\n{}", stop.all());
    assert!(connect(port, "postgres").is_err(), "the cluster no longer accepts connections");
    assert!(wait_until(e2e::PATIENCE, || !pid_alive(fake_pid)), "the fake PagerDuty (pid {fake_pid}) is gone");
    let again = run_script("demo-stop.sh", &dir, STOP_TIMEOUT);
    assert_eq!(again.status, Some(0), "a second demo-stop.sh fails:\n{}", again.all());
}
