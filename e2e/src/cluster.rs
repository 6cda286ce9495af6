//! A throw-away PostgreSQL cluster with pg_oncall preloaded (or, with
//! [`Builder::without_pg_oncall`], without it), for end-to-end tests, run from the
//! installation that `PG_CONFIG` names (`make test` points it at a private tree of the major
//! under test, made by `scripts/pgtree.sh`).
//!
//! Each [`Cluster`] lives in its own directory under `/tmp` (data directory, Unix socket,
//! server log, token files), owned by the `postgres` OS user; the server runs as that user
//! (through `runuser` when the tests run as root). With `PG_ONCALL_CHROOT` set (PostgreSQL 17
//! here: Debian trixie's build needs a newer glibc, see `scripts/provision.sh`), the server's
//! programs run inside that root file system (`chroot --userspec`), whose `/tmp` is the host's:
//! the cluster's paths are the same inside and out, and the tests connect from the host as
//! usual. Everything is bounded: commands, server
//! start and stop, connections (connect timeout, `statement_timeout`), and a per-cluster
//! watchdog that stops the server when a test overruns, so a stuck test fails instead of
//! hanging. Dropping the cluster stops the server (`-m immediate`) and deletes the directory,
//! unless `E2E_KEEP` is set (then the path is printed).
//!
//! [`Cluster::standby_of`] makes a streaming-replication hot standby of a running cluster
//! (`pg_basebackup -R -X stream`); [`Cluster::pause_replication`] and [`Cluster::stop`] (of
//! the primary) cut it off.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fake_pagerduty::FakePagerDuty;
use postgres::{Client, Config, NoTls};

/// How long one test may keep a cluster before the watchdog stops the server.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);
/// `statement_timeout` of every harness connection.
pub const STATEMENT_TIMEOUT: &str = "60s";
/// An email no test uses: the readiness probe inserts and deletes a manual shift for it.
pub const PROBE_EMAIL: &str = "e2e-probe@harness.invalid";
/// The backend_type of the sync worker in `pg_stat_activity`.
pub const SYNC_WORKER: &str = "pg_oncall sync";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Polls `f` every 10 ms until it returns true (→ true) or `timeout` passes (→ false).
/// `f` is always called at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return f();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SQL identifier quoting (`alice@example.com` → `"alice@example.com"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL literal quoting.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The text of a server error (message, detail, hint), or the client error's Display.
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" DETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!(" HINT: {hint}"));
            }
            text
        }
        None => e.to_string(),
    }
}

fn pg_config() -> String {
    std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into())
}

fn pg_config_dir(which: &str) -> PathBuf {
    let out = Command::new(pg_config())
        .arg(which)
        .output()
        .unwrap_or_else(|e| panic!("e2e: cannot run {} {which}: {e}", pg_config()));
    assert!(out.status.success(), "e2e: pg_config {which} failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `pg_config --bindir`.
pub fn bindir() -> PathBuf {
    pg_config_dir("--bindir")
}

/// `pg_config --pkglibdir`.
pub fn pkglibdir() -> PathBuf {
    pg_config_dir("--pkglibdir")
}

/// The root file system the server's programs run in (`PG_ONCALL_CHROOT`), if any.
pub fn chroot_dir() -> Option<PathBuf> {
    std::env::var_os("PG_ONCALL_CHROOT").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The `chroot` program of this machine (in /usr/sbin on Debian, which a client's clean PATH
/// does not search).
fn chroot_program() -> PathBuf {
    ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot", "/bin/chroot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("chroot"))
}

/// The major version of the installation under test (`pg_config --version`).
pub fn server_major() -> u32 {
    let out = Command::new(pg_config())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("e2e: cannot run {} --version: {e}", pg_config()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("PostgreSQL ")
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("e2e: cannot read a major version from {text:?}"))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// uid and gid of the `postgres` OS user.
fn postgres_ids() -> (u32, u32) {
    // SAFETY: getpwnam with a NUL-terminated name; the result is copied out at once.
    unsafe {
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(!pw.is_null(), "e2e: running as root needs the `postgres` OS user (apt-get install postgresql-15)");
        ((*pw).pw_uid, (*pw).pw_gid)
    }
}

/// Makes `path` belong to the server's OS user (a no-op unless we are root).
fn give_to_postgres(path: &Path) {
    if is_root() {
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("e2e: chown {} to postgres: {e}", path.display()));
    }
}

/// A free TCP port on 127.0.0.1 (free now; the start retries if someone takes it meanwhile).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("e2e: no free TCP port on 127.0.0.1")
}

/// Runs a PostgreSQL program as the server's OS user, bounded by `timeout`; its output is
/// appended to `<root>/commands.log`. Returns whether it succeeded.
fn run_as_postgres(root: &Path, program: &Path, args: &[&str], timeout: Duration) -> bool {
    let out_path = root.join("commands.log");
    let mut out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out_path)
        .unwrap_or_else(|e| panic!("e2e: open {}: {e}", out_path.display()));
    let _ = writeln!(out, "$ {} {}", program.display(), args.join(" "));
    let mut cmd = if let Some(chroot) = chroot_dir() {
        // The program as the root sees it; every other path we pass is under /tmp, the same
        // inside the root and out.
        let inner = program
            .strip_prefix(&chroot)
            .unwrap_or_else(|_| panic!("e2e: {} is not inside PG_ONCALL_CHROOT {}", program.display(), chroot.display()));
        assert!(is_root(), "e2e: running the server in {} (PG_ONCALL_CHROOT) needs root", chroot.display());
        let (uid, gid) = postgres_ids();
        let mut c = Command::new("chroot");
        c.arg(format!("--userspec={uid}:{gid}")).arg(&chroot).arg(Path::new("/").join(inner));
        c
    } else if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("e2e: dup log fd"))
        .stderr(out.try_clone().expect("e2e: dup log fd"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("e2e: cannot start {}: {e}", program.display()));
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writeln!(out, "e2e: killed after {timeout:?}");
                return false;
            }
        }
    }
}

/// Options for [`Cluster::builder`].
pub struct Builder {
    conf: Vec<String>,
    wait_ready: bool,
    pagerduty_url: Option<String>,
    token: Option<String>,
    deadline: Duration,
    with_pg_oncall: bool,
    extension_version: Option<String>,
}

impl Builder {
    /// Extra `postgresql.conf` lines, written after the harness's own (so they win).
    pub fn conf(mut self, lines: &[&str]) -> Builder {
        self.conf.extend(lines.iter().map(|l| l.to_string()));
        self
    }

    /// Do not wait for the sync worker and the snapshot (for clusters whose worker cannot
    /// start, e.g. `pg_oncall.database` naming a missing database).
    pub fn no_wait_ready(mut self) -> Builder {
        self.wait_ready = false;
        self
    }

    /// Points `pg_oncall.pagerduty_api_url` at `url`; with `Some(token)`, also writes a token
    /// file (postgres-owned, 0600) and sets `pg_oncall.pagerduty_token_file` to it.
    pub fn pagerduty(mut self, url: &str, token: Option<&str>) -> Builder {
        self.pagerduty_url = Some(url.to_string());
        self.token = token.map(str::to_string);
        self
    }

    /// A plain cluster: pg_oncall is neither preloaded nor configured nor created (the
    /// baseline of side-by-side comparisons). Implies [`Builder::no_wait_ready`].
    pub fn without_pg_oncall(mut self) -> Builder {
        self.with_pg_oncall = false;
        self.wait_ready = false;
        self
    }

    /// `CREATE EXTENSION pg_oncall VERSION '<version>'` (an older release, to upgrade from)
    /// instead of the default version.
    pub fn extension_version(mut self, version: &str) -> Builder {
        self.extension_version = Some(version.to_string());
        self
    }

    /// Watchdog deadline for this cluster (default [`DEFAULT_DEADLINE`], or `E2E_DEADLINE_SECS`).
    pub fn deadline(mut self, deadline: Duration) -> Builder {
        self.deadline = deadline;
        self
    }

    pub fn start(self) -> Cluster {
        Cluster::start_with(self)
    }

    /// A streaming-replication hot standby of `primary` (see [`Cluster::standby_of`]), with
    /// this builder's options: `conf` lines are appended after the harness's standby settings,
    /// `pagerduty` rewrites the copied PagerDuty settings, `no_wait_ready` returns as soon as
    /// the standby accepts read-only connections (before its worker has loaded anything).
    pub fn start_standby(self, primary: &Cluster) -> Cluster {
        Cluster::start_standby_with(self, primary)
    }
}

struct Watchdog {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// A running cluster. See the module documentation.
pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    bindir: PathBuf,
    port: u16,
    wait_ready: bool,
    token_files: AtomicU32,
    watchdog: Option<Watchdog>,
    /// For a standby: the primary's socket directory and port (for readiness probes and
    /// [`Cluster::resume_replication`]).
    primary: Option<(PathBuf, u16)>,
}

impl Cluster {
    /// A fresh cluster with `extra_conf` appended to `postgresql.conf`, the extension created
    /// in database `postgres`, and the sync worker running with its snapshot loaded.
    pub fn start(extra_conf: &[&str]) -> Cluster {
        Cluster::builder().conf(extra_conf).start()
    }

    pub fn builder() -> Builder {
        let deadline = std::env::var("E2E_DEADLINE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_DEADLINE);
        Builder { conf: Vec::new(), wait_ready: true, pagerduty_url: None, token: None, deadline, with_pg_oncall: true, extension_version: None }
    }

    /// A fake PagerDuty accepting `token`, and a cluster synced from it: token file written,
    /// `pg_oncall.refresh_interval = '1h'` (tests sync with `oncall.refresh()`; `extra_conf`
    /// may override it), the start-up sync finished and the fake's request log cleared.
    pub fn start_with_pagerduty(extra_conf: &[&str], token: &str) -> (Cluster, FakePagerDuty) {
        let fake = FakePagerDuty::start(token).expect("e2e: the fake PagerDuty starts");
        let cluster = Cluster::builder()
            .conf(&["pg_oncall.refresh_interval = '1h'"])
            .conf(extra_conf)
            .pagerduty(&fake.url(), Some(token))
            .start();
        cluster
            .connect()
            .batch_execute("SELECT oncall.refresh()")
            .unwrap_or_else(|e| panic!("e2e: the start-up sync against the fake failed: {}\n{}", error_text(&e), cluster.log_tail()));
        fake.clear_requests();
        (cluster, fake)
    }

    /// A new, empty cluster directory (owned by postgres, 0700) with its watchdog running;
    /// the data directory is not created yet.
    fn new_dir(opts: &Builder) -> Cluster {
        let bindir = bindir();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let root = PathBuf::from(format!(
            "/tmp/pg_oncall-e2e-{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        ));
        fs::create_dir(&root).unwrap_or_else(|e| panic!("e2e: create {}: {e}", root.display()));
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).expect("e2e: chmod cluster dir");
        give_to_postgres(&root);
        let data = root.join("data");
        let mut cluster = Cluster {
            root,
            data,
            bindir,
            port: free_port(),
            wait_ready: opts.wait_ready,
            token_files: AtomicU32::new(0),
            watchdog: None,
            primary: None,
        };
        cluster.watchdog = Some(cluster.spawn_watchdog(opts.deadline));
        cluster
    }

    fn start_with(opts: Builder) -> Cluster {
        let mut cluster = Cluster::new_dir(&opts);

        let data_arg = cluster.data.to_string_lossy().into_owned();
        let initdb = cluster.bindir.join("initdb");
        assert!(
            run_as_postgres(&cluster.root, &initdb, &["-D", &data_arg, "-A", "trust", "-U", "postgres", "-N", "-E", "UTF8", "--locale=C"], Duration::from_secs(60)),
            "e2e: initdb failed:\n{}",
            cluster.commands_log()
        );
        // Trust on the local socket and on 127.0.0.1 (login-gate tests need both routes), and
        // replication connections for standby tests.
        cluster.write_file_as_postgres(
            &cluster.data.join("pg_hba.conf"),
            "# e2e harness\n\
             local all         all              trust\n\
             host  all         all 127.0.0.1/32 trust\n\
             local replication all              trust\n\
             host  replication all 127.0.0.1/32 trust\n",
        );
        let mut conf = vec![
            "# ---- e2e harness".to_string(),
            format!("port = {}", cluster.port),
            "listen_addresses = '127.0.0.1'".into(),
            format!("unix_socket_directories = '{}'", cluster.root.display()),
            "logging_collector = off".into(),
            // `%e`: every line carries its SQLSTATE; pg_oncall's audit lines carry OC000, which
            // tells them from forged ones (see `audit.rs`, which parses this prefix).
            format!("log_line_prefix = {}", quote_literal(crate::audit::LOG_LINE_PREFIX)),
            "fsync = off".into(),
            "shared_buffers = '32MB'".into(),
        ];
        if opts.with_pg_oncall {
            conf.push("shared_preload_libraries = 'pg_oncall'".into());
            conf.push("pg_oncall.database = 'postgres'".into());
        }
        if let Some(url) = &opts.pagerduty_url {
            conf.push(format!("pg_oncall.pagerduty_api_url = '{url}'"));
        }
        if let Some(token) = &opts.token {
            let path = cluster.token_file(token);
            conf.push(format!("pg_oncall.pagerduty_token_file = '{}'", path.display()));
        }
        conf.push("# ---- test".into());
        conf.extend(opts.conf.iter().cloned());
        for line in &conf {
            cluster.set_conf(line);
        }
        cluster.pg_ctl_start();
        if opts.with_pg_oncall {
            let mut client = cluster.connect();
            let create = match &opts.extension_version {
                Some(version) => format!("CREATE EXTENSION pg_oncall VERSION {}", quote_literal(version)),
                None => "CREATE EXTENSION pg_oncall".to_string(),
            };
            client
                .batch_execute(&create)
                .unwrap_or_else(|e| panic!("e2e: {create} failed: {}\n{}", error_text(&e), cluster.log_tail()));
        }
        if cluster.wait_ready {
            cluster.wait_ready();
        }
        cluster
    }

    /// See [`Builder::start_standby`]. `pg_basebackup -R -X stream` (as postgres, over TCP to
    /// the primary, whose pg_hba the harness opens to replication) copies the whole data
    /// directory — `postgresql.conf` with the primary's settings and token-file path,
    /// `postgresql.auto.conf`, and `pg_oncall.snapshot` — and writes `standby.signal` and
    /// `primary_conninfo`. The copied port, socket and listen settings are removed from
    /// `postgresql.auto.conf` and the standby's own appended to `postgresql.conf`, so they win.
    fn start_standby_with(opts: Builder, primary: &Cluster) -> Cluster {
        let mut standby = Cluster::new_dir(&opts);
        standby.primary = Some((primary.root.clone(), primary.port));
        let preload: String = primary
            .connect()
            .query_one("SHOW shared_preload_libraries", &[])
            .expect("e2e: SHOW shared_preload_libraries on the primary")
            .get(0);
        let data_arg = standby.data.to_string_lossy().into_owned();
        let port_arg = primary.port.to_string();
        let label = format!("e2e-standby-{}", standby.port);
        let basebackup = standby.bindir.join("pg_basebackup");
        assert!(
            run_as_postgres(
                &standby.root,
                &basebackup,
                &["-h", "127.0.0.1", "-p", &port_arg, "-U", "postgres", "-D", &data_arg, "-R", "-X", "stream", "-c", "fast", "-l", &label, "-w"],
                Duration::from_secs(120),
            ),
            "e2e: pg_basebackup from the primary failed:\n{}\n{}",
            standby.commands_log(),
            primary.log_tail()
        );
        let auto_conf = standby.data.join("postgresql.auto.conf");
        let copied = fs::read_to_string(&auto_conf).unwrap_or_default();
        let own = ["port", "listen_addresses", "unix_socket_directories"];
        let kept: String = copied
            .lines()
            .filter(|line| {
                let name = line.split('=').next().unwrap_or("").trim();
                !own.contains(&name)
            })
            .map(|line| format!("{line}\n"))
            .collect();
        standby.write_file_as_postgres(&auto_conf, &kept);
        let mut conf = vec![
            "# ---- e2e standby".to_string(),
            format!("port = {}", standby.port),
            "listen_addresses = '127.0.0.1'".into(),
            format!("unix_socket_directories = '{}'", standby.root.display()),
            format!("shared_preload_libraries = {}", quote_literal(&preload)),
            "hot_standby = on".into(),
        ];
        if let Some(url) = &opts.pagerduty_url {
            conf.push(format!("pg_oncall.pagerduty_api_url = '{url}'"));
            let token_file = opts.token.as_deref().map(|t| standby.token_file(t).display().to_string()).unwrap_or_default();
            conf.push(format!("pg_oncall.pagerduty_token_file = '{token_file}'"));
        }
        conf.push("# ---- test".into());
        conf.extend(opts.conf.iter().cloned());
        for line in &conf {
            standby.set_conf(line);
        }
        standby.pg_ctl_start();
        assert!(standby.in_recovery(), "e2e: the standby is not in recovery\n{}", standby.log_tail());
        if standby.wait_ready {
            standby.wait_ready();
        }
        standby
    }

    fn spawn_watchdog(&self, deadline: Duration) -> Watchdog {
        let (stop, stopped) = mpsc::channel::<()>();
        let pg_ctl = self.bindir.join("pg_ctl");
        let root = self.root.clone();
        let data = self.data.to_string_lossy().into_owned();
        let thread = std::thread::Builder::new()
            .name("e2e-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(deadline) {
                    eprintln!(
                        "e2e: watchdog: the test kept cluster {} longer than {deadline:?}; stopping the server so it fails instead of hanging",
                        root.display()
                    );
                    run_as_postgres(&root, &pg_ctl, &["-D", &data, "-m", "immediate", "-w", "-t", "10", "stop"], Duration::from_secs(15));
                }
            })
            .expect("e2e: spawn watchdog");
        Watchdog { stop, thread: Some(thread) }
    }

    fn pg_ctl(&self, args: &[&str], timeout: Duration) -> bool {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        run_as_postgres(&self.root, &self.bindir.join("pg_ctl"), &all, timeout)
    }

    /// `pg_ctl start -w`, retrying on another port if ours was taken meanwhile.
    fn pg_ctl_start(&mut self) {
        let log = self.log_path().to_string_lossy().into_owned();
        for attempt in 0..5 {
            let before = self.log().len();
            if self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start"], Duration::from_secs(70)) {
                self.assert_maps_tested_library();
                return;
            }
            let log_now = self.log();
            let new_part = log_now.get(before..).unwrap_or("");
            let port_taken = new_part.contains("could not bind") || new_part.contains("Address already in use");
            if !port_taken || attempt == 4 {
                panic!("e2e: pg_ctl start failed:\n{}\n--- server log:\n{}", self.commands_log(), log_now);
            }
            self.port = free_port();
            self.set_conf(&format!("port = {}", self.port));
        }
    }

    /// The postmaster has mapped `pg_oncall.so` from the installation under test (the private
    /// tree that `make test` installs the library just built into), not from anywhere else.
    fn assert_maps_tested_library(&self) {
        let expected = pkglibdir().join("pg_oncall.so");
        let pid = fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<u32>().ok()))
            .unwrap_or_else(|| panic!("e2e: no postmaster.pid in {}", self.data.display()));
        let maps = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_else(|e| panic!("e2e: /proc/{pid}/maps: {e}"));
        let mapped: std::collections::BTreeSet<&str> =
            maps.lines().filter_map(|l| l.split_whitespace().nth(5)).filter(|p| p.ends_with("/pg_oncall.so")).collect();
        if !self.preloads_library() {
            assert!(mapped.is_empty(), "e2e: a cluster without pg_oncall preloaded maps {mapped:?}");
            return;
        }
        let expected = expected.to_string_lossy();
        assert!(
            mapped.len() == 1 && mapped.contains(expected.as_ref()),
            "e2e: the postmaster maps {mapped:?}, not the library under test {expected}"
        );
    }

    fn preloads_library(&self) -> bool {
        let conf = fs::read_to_string(self.data.join("postgresql.conf")).unwrap_or_default();
        let auto = fs::read_to_string(self.data.join("postgresql.auto.conf")).unwrap_or_default();
        let last = conf.lines().chain(auto.lines()).filter(|l| l.trim_start().starts_with("shared_preload_libraries")).last();
        last.is_some_and(|l| l.contains("pg_oncall"))
    }

    fn write_file_as_postgres(&self, path: &Path, text: &str) {
        fs::write(path, text).unwrap_or_else(|e| panic!("e2e: write {}: {e}", path.display()));
        give_to_postgres(path);
    }

    // ------------------------------------------------------------------ paths and files

    /// The cluster's directory (socket directory too).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// The whole server log.
    pub fn log(&self) -> String {
        fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The log's current length in bytes, to read what comes after with [`Cluster::log_since`].
    pub fn log_len(&self) -> usize {
        fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize)
    }

    /// The log from byte `offset` on.
    pub fn log_since(&self, offset: usize) -> String {
        let bytes = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(offset..).unwrap_or(&[])).into_owned()
    }

    /// The last 60 lines of the log (for assertion messages).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!("--- server log tail ({}):\n{}", self.log_path().display(), lines[lines.len().saturating_sub(60)..].join("\n"))
    }

    fn commands_log(&self) -> String {
        fs::read_to_string(self.root.join("commands.log")).unwrap_or_default()
    }

    /// Waits until a log line after byte `offset` contains `needle`.
    pub fn wait_for_log(&self, offset: usize, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_since(offset).contains(needle))
    }

    /// Writes `token` (plus a newline) to a new file in the cluster directory, owned by the
    /// server's OS user with mode 0600, and returns its path.
    pub fn token_file(&self, token: &str) -> PathBuf {
        self.raw_file(&format!("{token}\n"))
    }

    /// Like [`Cluster::token_file`] but writes `content` verbatim (empty files, padding...).
    pub fn raw_file(&self, content: &str) -> PathBuf {
        let n = self.token_files.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join(format!("pagerduty-{n}.token"));
        let mut f = File::create(&path).unwrap_or_else(|e| panic!("e2e: create {}: {e}", path.display()));
        f.set_permissions(fs::Permissions::from_mode(0o600)).expect("e2e: chmod token file");
        f.write_all(content.as_bytes()).expect("e2e: write token file");
        drop(f);
        give_to_postgres(&path);
        path
    }

    // ------------------------------------------------------------------ configuration

    /// Appends a line to `postgresql.conf` (later lines win). Takes effect on
    /// [`Cluster::reload`] or [`Cluster::restart`] as PostgreSQL's contexts say.
    pub fn set_conf(&self, line: &str) {
        let path = self.data.join("postgresql.conf");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap_or_else(|e| panic!("e2e: open {}: {e}", path.display()));
        writeln!(f, "{line}").expect("e2e: append to postgresql.conf");
    }

    /// `ALTER SYSTEM SET name = value` (value is SQL, e.g. `'2s'`), then [`Cluster::reload`].
    pub fn alter_system(&self, name: &str, value: &str) {
        let mut c = self.connect();
        c.batch_execute(&format!("ALTER SYSTEM SET {name} = {value}"))
            .unwrap_or_else(|e| panic!("e2e: ALTER SYSTEM SET {name} = {value}: {}", error_text(&e)));
        self.reload();
    }

    /// `ALTER SYSTEM RESET name`, then [`Cluster::reload`].
    pub fn alter_system_reset(&self, name: &str) {
        let mut c = self.connect();
        c.batch_execute(&format!("ALTER SYSTEM RESET {name}"))
            .unwrap_or_else(|e| panic!("e2e: ALTER SYSTEM RESET {name}: {}", error_text(&e)));
        self.reload();
    }

    /// Points the cluster at a fake PagerDuty: API URL and a fresh token file, then reload.
    pub fn use_pagerduty(&self, fake: &FakePagerDuty, token: &str) -> PathBuf {
        let path = self.token_file(token);
        self.set_conf(&format!("pg_oncall.pagerduty_api_url = '{}'", fake.url()));
        self.set_conf(&format!("pg_oncall.pagerduty_token_file = '{}'", path.display()));
        self.reload();
        path
    }

    /// `pg_reload_conf()`, returning once the postmaster has re-read the files (a new
    /// backend sees the new `pg_conf_load_time()`), and so has signalled every process: an
    /// existing session applies the change before its next statement.
    pub fn reload(&self) {
        let errors = self.reload_allowing_errors();
        assert!(errors.is_empty(), "e2e: configuration errors after reload: {errors:?}");
    }

    /// [`Cluster::reload`] for tests that write bad settings on purpose: returns the
    /// `pg_file_settings` errors ("name: error") instead of failing on them.
    pub fn reload_allowing_errors(&self) -> Vec<String> {
        let load_time = |c: &mut Client| -> chrono::DateTime<chrono::Utc> {
            c.query_one("SELECT pg_conf_load_time()", &[]).expect("e2e: pg_conf_load_time()").get(0)
        };
        let before = load_time(&mut self.connect());
        // pg_conf_load_time has microsecond resolution; make sure the reload is distinguishable.
        std::thread::sleep(Duration::from_millis(2));
        self.connect().batch_execute("SELECT pg_reload_conf()").expect("e2e: pg_reload_conf()");
        let reloaded = wait_until(Duration::from_secs(10), || load_time(&mut self.connect()) > before);
        assert!(reloaded, "e2e: the server did not reload its configuration within 10 s\n{}", self.log_tail());
        self.connect()
            .query("SELECT coalesce(name, '?') || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL", &[])
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default()
    }

    /// An immediate shutdown (as after a backend crash: no shutdown checkpoint, shared memory
    /// gone) and a start again, then waits for the worker as at start.
    pub fn crash_and_restart(&mut self) {
        assert!(
            self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "stop"], Duration::from_secs(40)),
            "e2e: pg_ctl stop -m immediate failed:\n{}\n{}",
            self.commands_log(),
            self.log_tail()
        );
        self.pg_ctl_start();
        if self.wait_ready {
            self.wait_ready();
        }
    }

    /// Fast shutdown and start again (same directory, port and log), then waits for the
    /// worker as at start.
    pub fn restart(&mut self) {
        assert!(
            self.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"], Duration::from_secs(40)),
            "e2e: pg_ctl stop failed:\n{}\n{}",
            self.commands_log(),
            self.log_tail()
        );
        self.pg_ctl_start();
        if self.wait_ready {
            self.wait_ready();
        }
    }

    // ------------------------------------------------------------------ connections

    /// Connection settings for `role` in database `db` over the Unix socket, with a connect
    /// timeout and `statement_timeout`; adjust (e.g. `options`) and connect with
    /// [`Cluster::try_connect_with`].
    pub fn config(&self, role: &str, db: &str) -> Config {
        let mut config = Self::base_config(role, db);
        config.host_path(&self.root).port(self.port);
        config
    }

    /// Like [`Cluster::config`] but over TCP to 127.0.0.1 (only: a `Config` with several
    /// hosts would try the next one after a refused login).
    pub fn tcp_config(&self, role: &str, db: &str) -> Config {
        let mut config = Self::base_config(role, db);
        config.host("127.0.0.1").port(self.port);
        config
    }

    fn base_config(role: &str, db: &str) -> Config {
        let mut config = Config::new();
        config
            .user(role)
            .dbname(db)
            .application_name("e2e")
            .connect_timeout(Duration::from_secs(10))
            .options(&format!("-c statement_timeout={STATEMENT_TIMEOUT}"));
        config
    }

    pub fn try_connect_with(&self, config: &Config) -> Result<Client, postgres::Error> {
        config.connect(NoTls)
    }

    /// Connects as `role` to `db` (Unix socket), or returns the error (refused logins...).
    pub fn try_connect(&self, role: &str, db: &str) -> Result<Client, postgres::Error> {
        self.try_connect_with(&self.config(role, db))
    }

    fn connect_or_panic(&self, config: &Config, what: &str) -> Client {
        self.try_connect_with(config)
            .unwrap_or_else(|e| panic!("e2e: cannot connect {what}: {}\n{}", error_text(&e), self.log_tail()))
    }

    /// Superuser `postgres`, database `postgres`.
    pub fn connect(&self) -> Client {
        self.connect_or_panic(&self.config("postgres", "postgres"), "as postgres")
    }

    /// `role`, database `postgres`, Unix socket.
    pub fn connect_as(&self, role: &str) -> Client {
        self.connect_or_panic(&self.config(role, "postgres"), &format!("as {role}"))
    }

    /// `role`, database `db`, Unix socket.
    pub fn connect_db(&self, role: &str, db: &str) -> Client {
        self.connect_or_panic(&self.config(role, db), &format!("as {role} to {db}"))
    }

    /// `role`, database `postgres`, TCP to 127.0.0.1.
    pub fn connect_tcp_as(&self, role: &str) -> Client {
        self.connect_or_panic(&self.tcp_config(role, "postgres"), &format!("as {role} over TCP"))
    }

    /// This major's own `psql` (from the installation under test), with `-X` (no psqlrc) and
    /// a clean environment that points it at this cluster's Unix socket as `postgres`, database
    /// `postgres`, messages in English (`LC_ALL=C`). Add arguments (and `PGAPPNAME`, another
    /// `PGUSER`/`PGDATABASE`...) and run it; it runs as the current OS user.
    pub fn psql(&self) -> Command {
        self.psql_in(&self.root)
    }

    /// [`Cluster::psql`] with `dir` (under /tmp) as its working directory.
    pub fn psql_in(&self, dir: &Path) -> Command {
        let mut cmd = self.client_in("psql", dir);
        cmd.arg("-X");
        cmd
    }

    /// A client program of this major (`pg_dump`, `psql`...) with the environment of
    /// [`Cluster::psql`], without arguments.
    pub fn client(&self, program: &str) -> Command {
        self.client_in(program, &self.root)
    }

    /// [`Cluster::client`] with `dir` (under /tmp) as its working directory. Under
    /// `PG_ONCALL_CHROOT` it runs in that root (its libraries are the root's); /tmp, where the
    /// socket and `dir` are, is the same there.
    pub fn client_in(&self, program: &str, dir: &Path) -> Command {
        let path = self.bindir.join(program);
        let mut cmd = match chroot_dir() {
            Some(chroot) => {
                let inner = path
                    .strip_prefix(&chroot)
                    .unwrap_or_else(|_| panic!("e2e: {} is not inside PG_ONCALL_CHROOT {}", path.display(), chroot.display()));
                // By its path: the PATH below (the client's) would not find it in /usr/sbin.
                let mut c = Command::new(chroot_program());
                c.arg(&chroot).arg("/usr/bin/env").arg("-C").arg(dir).arg(Path::new("/").join(inner));
                c
            }
            None => {
                let mut c = Command::new(path);
                c.current_dir(dir);
                c
            }
        };
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .env("PGHOST", &self.root)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        cmd
    }

    // ------------------------------------------------------------------ the worker

    /// The sync worker's pid, from `pg_stat_activity`.
    pub fn worker_pid(&self) -> Option<i32> {
        self.try_connect("postgres", "postgres")
            .ok()?
            .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = $1", &[&SYNC_WORKER])
            .ok()
            .flatten()
            .map(|r| r.get(0))
    }

    /// Waits until the sync worker runs and a committed change to `oncall.shifts` reaches
    /// decisions (a probe shift inserted, seen, deleted, seen gone).
    ///
    /// On a standby the probe shift is inserted and deleted on the primary and watched on the
    /// standby (replication, then the standby's reload poll); if the primary is down, only the
    /// worker is waited for.
    pub fn wait_ready(&self) {
        assert!(
            wait_until(Duration::from_secs(30), || self.worker_pid().is_some()),
            "e2e: the pg_oncall sync worker did not start within 30 s\n{}",
            self.log_tail()
        );
        if let Some(primary) = self.primary_config() {
            if let Ok(writer) = primary.connect(NoTls) {
                self.wait_standby_follows(writer);
            }
            return;
        }
        self.sync_point();
    }

    /// A sync point with the snapshot: commits a probe shift, waits until decisions see it,
    /// deletes it and waits until they no longer do. Every change committed before the call
    /// has then reached the snapshot too (the worker reloads whole tables, in commit order),
    /// and the worker has finished the loop turn that published it. Tests that must show that
    /// something did *not* happen after a change wait for this instead of sleeping. Makes no
    /// gate decision (nothing is counted or logged). On a standby, the probe is committed on
    /// the primary and watched on the standby.
    pub fn sync_point(&self) {
        if let Some(primary) = self.primary_config() {
            let writer = primary.connect(NoTls).unwrap_or_else(|e| panic!("e2e: sync point: cannot reach the primary: {e}"));
            self.wait_standby_follows(writer);
            return;
        }
        let mut c = self.connect();
        let probe = |c: &mut Client| -> bool {
            c.query_one("SELECT oncall.is_on_call($1)", &[&PROBE_EMAIL]).expect("e2e: is_on_call probe").get(0)
        };
        c.execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&PROBE_EMAIL])
            .expect("e2e: insert probe shift");
        assert!(
            wait_until(Duration::from_secs(20), || probe(&mut c)),
            "e2e: the snapshot did not pick up a committed shift within 20 s\n{}",
            self.log_tail()
        );
        c.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&PROBE_EMAIL]).expect("e2e: delete probe shift");
        assert!(
            wait_until(Duration::from_secs(10), || !probe(&mut c)),
            "e2e: the snapshot did not drop the probe shift within 10 s\n{}",
            self.log_tail()
        );
    }

    /// `SELECT oncall.refresh()` as the superuser, failing the test (with the log's tail) if
    /// the sync fails.
    #[track_caller]
    pub fn refresh(&self) {
        if let Err(e) = self.connect().batch_execute("SELECT oncall.refresh()") {
            panic!("oncall.refresh() failed: {}\n{}", error_text(&e), self.log_tail());
        }
    }

    fn wait_standby_follows(&self, mut writer: Client) {
        let mut c = self.connect();
        let probe = |c: &mut Client| -> bool {
            c.query_one("SELECT oncall.is_on_call($1)", &[&PROBE_EMAIL]).expect("e2e: is_on_call probe on the standby").get(0)
        };
        writer
            .execute("INSERT INTO oncall.shifts (source, email) VALUES ('manual', $1)", &[&PROBE_EMAIL])
            .expect("e2e: insert probe shift on the primary");
        let seen = wait_until(Duration::from_secs(20), || probe(&mut c));
        writer.execute("DELETE FROM oncall.shifts WHERE email = $1", &[&PROBE_EMAIL]).expect("e2e: delete probe shift on the primary");
        assert!(seen, "e2e: the standby's snapshot did not pick up a shift committed on the primary within 20 s\n{}", self.log_tail());
        assert!(
            wait_until(Duration::from_secs(10), || !probe(&mut c)),
            "e2e: the standby's snapshot did not drop the probe shift within 10 s\n{}",
            self.log_tail()
        );
    }

    // ------------------------------------------------------------------ replication

    /// A streaming-replication hot standby of `primary`, in its own directory with its own
    /// port and socket, `hot_standby = on` and the primary's `shared_preload_libraries`; it
    /// returns once the standby's snapshot follows a change committed on the primary. The
    /// copied `postgresql.conf` keeps the primary's other settings (PagerDuty URL, token-file
    /// path...); override them with [`Builder::conf`] and [`Builder::start_standby`].
    pub fn standby_of(primary: &Cluster) -> Cluster {
        Cluster::builder().start_standby(primary)
    }

    /// Whether this cluster was made by [`Cluster::standby_of`].
    pub fn is_standby(&self) -> bool {
        self.primary.is_some()
    }

    fn primary_config(&self) -> Option<Config> {
        let (root, port) = self.primary.as_ref()?;
        let mut config = Self::base_config("postgres", "postgres");
        config.host_path(root).port(*port);
        Some(config)
    }

    /// `pg_is_in_recovery()`.
    pub fn in_recovery(&self) -> bool {
        self.connect().query_one("SELECT pg_is_in_recovery()", &[]).expect("e2e: pg_is_in_recovery()").get(0)
    }

    /// Whether this standby's WAL receiver is streaming from the primary.
    pub fn streaming(&self) -> bool {
        self.try_connect("postgres", "postgres")
            .ok()
            .and_then(|mut c| c.query_opt("SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'", &[]).ok())
            .flatten()
            .is_some()
    }

    /// Waits until this standby has replayed everything `primary` had written when called.
    pub fn wait_caught_up(&self, primary: &Cluster, timeout: Duration) -> bool {
        let target: String = primary
            .connect()
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .expect("e2e: pg_current_wal_lsn() on the primary")
            .get(0);
        let mut c = self.connect();
        wait_until(timeout, || {
            c.query_one("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)", &[&target])
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        })
    }

    /// Stops replication while both servers keep running: `primary_conninfo = ''` (ALTER
    /// SYSTEM on the standby) and reload; returns once the WAL receiver is gone.
    pub fn pause_replication(&self) {
        assert!(self.is_standby(), "e2e: pause_replication on a cluster that is not a standby");
        self.alter_system("primary_conninfo", "''");
        assert!(
            wait_until(Duration::from_secs(15), || !self.streaming()),
            "e2e: the standby still streams 15 s after primary_conninfo = ''\n{}",
            self.log_tail()
        );
    }

    /// Undoes [`Cluster::pause_replication`]: points `primary_conninfo` back at the primary
    /// and returns once the standby streams again.
    pub fn resume_replication(&self) {
        let (_, port) = self.primary.as_ref().expect("e2e: resume_replication on a cluster that is not a standby");
        self.alter_system("primary_conninfo", &quote_literal(&format!("host=127.0.0.1 port={port} user=postgres")));
        assert!(
            wait_until(Duration::from_secs(15), || self.streaming()),
            "e2e: the standby does not stream 15 s after primary_conninfo was restored\n{}",
            self.log_tail()
        );
    }

    /// Fast shutdown, keeping the directory (a primary going away under its standbys; the
    /// standby keeps running and retries). Dropping the cluster later is harmless.
    pub fn stop(&self) {
        assert!(
            self.pg_ctl(&["-m", "fast", "-w", "-t", "30", "stop"], Duration::from_secs(40)),
            "e2e: pg_ctl stop failed:\n{}\n{}",
            self.commands_log(),
            self.log_tail()
        );
    }

    /// Asserts that `secret` appears nowhere a DBA or user could read it: the server log,
    /// `pg_settings`, `pg_file_settings`, `SHOW ALL`, `oncall.status()`, `pg_stat_activity`.
    pub fn assert_secret_hidden(&self, secret: &str) {
        assert!(!secret.is_empty());
        let log = self.log();
        assert!(!log.contains(secret), "the token appears in the server log {}", self.log_path().display());
        let mut c = self.connect();
        let queries = [
            ("pg_settings", "SELECT coalesce(string_agg(s::text, E'\\n'), '') FROM pg_settings AS s"),
            ("pg_file_settings", "SELECT coalesce(string_agg(s::text, E'\\n'), '') FROM pg_file_settings AS s"),
            ("oncall.status()", "SELECT s::text FROM oncall.status() AS s"),
            ("oncall.sync_state", "SELECT coalesce(string_agg(s::text, E'\\n'), '') FROM oncall.sync_state AS s"),
            ("pg_stat_activity", "SELECT coalesce(string_agg(a::text, E'\\n'), '') FROM pg_stat_activity AS a"),
        ];
        for (what, sql) in queries {
            let text: String = c.query_one(sql, &[]).unwrap_or_else(|e| panic!("{what}: {}", error_text(&e))).get(0);
            assert!(!text.contains(secret), "the token appears in {what}");
        }
        let show_all: Vec<String> = c
            .simple_query("SHOW ALL")
            .expect("SHOW ALL")
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(format!("{:?} {:?}", r.get(0), r.get(1))),
                _ => None,
            })
            .collect();
        assert!(!show_all.iter().any(|l| l.contains(secret)), "the token appears in SHOW ALL");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = self.pg_ctl(&["-m", "immediate", "-w", "-t", "15", "stop"], Duration::from_secs(20));
        if !stopped {
            // Our own postmaster only: the pid from our data directory's postmaster.pid.
            if let Some(pid) = fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
            {
                // SAFETY: kill(2) on the pid our own cluster recorded.
                if unsafe { libc::kill(pid, 0) } == 0 {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.stop.send(());
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        if std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("e2e: keeping cluster directory {} (E2E_KEEP)", self.root.display());
        } else if std::thread::panicking() && std::env::var_os("E2E_KEEP_FAILED").is_some() {
            eprintln!("e2e: keeping failed test's cluster directory {} (E2E_KEEP_FAILED)", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
