//! The background workers: a launcher that waits for `pg_oncall.database` to exist and keeps
//! one sync worker alive in it; the sync worker loads the snapshot from the tables whenever
//! they change and syncs `oncall.shifts` from PagerDuty every `refresh_interval`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oncall_core::decision::{normalize_email, Source};
use oncall_core::pagerduty::{self, SyncConfig, SyncError, SyncResult};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BackgroundWorkerStatus, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::{pg_sys, PgTryBuilder};

use crate::access::{pg_from_unix, unix_from_pg};
use crate::guc;
use crate::snapshot::{self, FixedStr, GatedRoleRow, ShiftEntry, Snapshot};

const LIBRARY: &str = "pg_oncall";
/// How often a worker with nothing to do re-checks for its database or extension.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// Cap on waiting out PagerDuty's `ratelimit-reset` inside one sync.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;

pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_oncall launcher")
        .set_type("pg_oncall launcher")
        .set_library(LIBRARY)
        .set_function("pg_oncall_launcher_main")
        .enable_spi_access()
        // A hot standby enforces too: it loads the replicated tables (and never syncs).
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Exit so that the postmaster restarts us (a clean exit would unregister a static worker).
// proc_exit is `-> !` in pgrx's PG15 bindings and `-> ()` in PG18's: the code after it is
// unreachable on one major and needed on the other.
#[allow(unreachable_code)]
fn exit_for_restart() -> ! {
    // SAFETY: proc_exit runs the registered exit callbacks and never returns.
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit returned")
}

/// Whether the database exists, read the way the autovacuum launcher does: a heap scan of the
/// shared catalog pg_database (an index lookup needs a selected database).
fn database_exists(name: &str) -> bool {
    BackgroundWorker::transaction(|| {
        let mut found = false;
        // SAFETY: inside a transaction; pg_database is a shared catalog whose relcache entry is
        // nailed, so it can be scanned without a database; each tuple's data is a
        // FormData_pg_database, valid until the next heap_getnext.
        unsafe {
            let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as i32);
            let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
            loop {
                let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                if tuple.is_null() {
                    break;
                }
                let header = (*tuple).t_data;
                let form = (header as *const u8).add((*header).t_hoff as usize) as *const pg_sys::FormData_pg_database;
                if std::ffi::CStr::from_ptr((*form).datname.data.as_ptr()).to_bytes() == name.as_bytes() {
                    found = true;
                    break;
                }
            }
            pg_sys::table_endscan(scan);
            pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
        }
        found
    })
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oncall_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let database = guc::database();
    let mut said_missing = false;
    let mut restart_delay = Duration::from_secs(1);
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: we are a normal backend-like process outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if !database_exists(&database) {
            if !said_missing {
                log!("pg_oncall: database \"{database}\" (pg_oncall.database) does not exist; waiting for it");
                said_missing = true;
            }
            if !BackgroundWorker::wait_latch(Some(IDLE_RECHECK)) {
                exit_for_restart();
            }
            continue;
        }
        said_missing = false;
        let started = Instant::now();
        // SAFETY: reads our own PID, set at process start.
        let my_pid = unsafe { pg_sys::MyProcPid };
        let worker = BackgroundWorkerBuilder::new("pg_oncall sync")
            .set_type("pg_oncall sync")
            .set_library(LIBRARY)
            .set_function("pg_oncall_sync_main")
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::ConsistentState)
            .set_extra(&database)
            .set_notify_pid(my_pid)
            .load_dynamic();
        match worker {
            Ok(worker) => {
                // The postmaster sets our latch whenever the worker starts or stops.
                while matches!(worker.pid(), Ok(_) | Err(BackgroundWorkerStatus::NotYetStarted)) {
                    if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
                        exit_for_restart();
                    }
                }
            }
            Err(_) => warning!("pg_oncall: could not start the sync worker (max_worker_processes reached?)"),
        }
        // A worker that died at once is not restarted in a tight loop.
        restart_delay = if started.elapsed() > Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            (restart_delay * 2).min(Duration::from_secs(30))
        };
        if !BackgroundWorker::wait_latch(Some(restart_delay)) {
            exit_for_restart();
        }
    }
}

/// One value from a read-only query. Read-only matters: `Spi::get_one` marks the transaction
/// as writing, which assigns a transaction id, which a hot standby refuses.
fn select_one<T: pgrx::FromDatum + pgrx::IntoDatum>(query: &str) -> Result<Option<T>, String> {
    Spi::connect(|client| client.select(query, None, &[])?.first().get_one::<T>()).map_err(|e| e.to_string())
}

fn extension_installed() -> bool {
    BackgroundWorker::transaction(|| {
        select_one::<bool>("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_oncall')")
            .ok()
            .flatten()
            .unwrap_or(false)
    })
}

fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state; callable any time after startup.
    unsafe { pg_sys::RecoveryInProgress() }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oncall_sync_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_owned();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // SAFETY: MyLatch/MyProcPid are this process's own, valid for its lifetime; the exit
    // callback clears them from shared memory so nobody signals a recycled latch.
    unsafe {
        snapshot::register_worker(pg_sys::MyLatch, pg_sys::MyProcPid);
        pg_sys::before_shmem_exit(Some(unregister_worker), pg_sys::Datum::from(0));
    }
    let mut worker = SyncWorker::new();
    let mut said_missing = false;
    let mut saw_extension = false;
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: outside any transaction, as ProcessConfigFile requires.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            worker.next_sync = Instant::now();
        }
        if !extension_installed() {
            if saw_extension {
                // DROP EXTENSION: the gate goes with it. (Never having seen it — a wrong
                // pg_oncall.database, say — keeps the on-disk snapshot enforced: fail closed.)
                log!("pg_oncall: extension pg_oncall was dropped from database \"{database}\"; nothing is gated any more");
                snapshot::clear();
                saw_extension = false;
            }
            if !said_missing {
                log!("pg_oncall: extension pg_oncall is not installed in database \"{database}\"; waiting for CREATE EXTENSION");
                said_missing = true;
            }
            if !BackgroundWorker::wait_latch(Some(IDLE_RECHECK)) {
                return;
            }
            continue;
        }
        said_missing = false;
        saw_extension = true;
        let _ = worker.reload_if_needed();
        if worker.sync_due() {
            if !worker.sync() {
                return;
            }
            // Changes committed while the sync ran (a failing one retries for seconds) woke a
            // latch the sync's own waits consumed: serve them now, not at the next timeout.
            let _ = worker.reload_if_needed();
        }
        if !BackgroundWorker::wait_latch(Some(worker.sleep_time())) {
            return;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn unregister_worker(_code: i32, _arg: pg_sys::Datum) {
    snapshot::register_worker(std::ptr::null_mut(), 0);
}

struct SyncWorker {
    reloads_seen: Option<u64>,
    syncs_seen: u64,
    next_sync: Instant,
    consecutive_failures: u32,
    last_error: Option<String>,
    /// On a standby the tables change by replication, which fires no trigger: poll.
    next_standby_reload: Instant,
}

/// How often a standby reloads the replicated tables.
const STANDBY_RELOAD: Duration = Duration::from_secs(1);

impl SyncWorker {
    fn new() -> SyncWorker {
        SyncWorker {
            reloads_seen: None,
            syncs_seen: snapshot::sync_requests(),
            next_sync: Instant::now(),
            consecutive_failures: 0,
            last_error: None,
            next_standby_reload: Instant::now(),
        }
    }

    /// Err when a requested reload failed (the previous snapshot stays published).
    fn reload_if_needed(&mut self) -> Result<(), String> {
        let requested = snapshot::reload_requests();
        let standby_due = in_recovery() && Instant::now() >= self.next_standby_reload;
        if self.reloads_seen == Some(requested) && !standby_due {
            return Ok(());
        }
        self.next_standby_reload = Instant::now() + STANDBY_RELOAD;
        match load_snapshot() {
            Ok(()) => {
                self.reloads_seen = Some(requested);
                Ok(())
            }
            Err(message) => {
                // Keep the previous snapshot; say so once per change, not once per wake-up.
                log!("pg_oncall: {message}; keeping the previous snapshot");
                self.reloads_seen = Some(requested);
                Err(message)
            }
        }
    }

    fn sync_due(&self) -> bool {
        !in_recovery() && (Instant::now() >= self.next_sync || snapshot::sync_requests() != self.syncs_seen)
    }

    fn sleep_time(&self) -> Duration {
        // A standby never syncs (next_sync stays in the past): it sleeps until its next poll.
        let (until, cap) = if in_recovery() {
            (self.next_standby_reload.saturating_duration_since(Instant::now()), STANDBY_RELOAD)
        } else {
            (self.next_sync.saturating_duration_since(Instant::now()), Duration::from_secs(3600))
        };
        until.min(cap).max(Duration::from_millis(10))
    }

    /// One sync; false when the worker must exit (SIGTERM during the sync).
    fn sync(&mut self) -> bool {
        let ticket = snapshot::sync_requests();
        self.syncs_seen = ticket;
        let interval = Duration::from_millis(guc::REFRESH_INTERVAL_MS.get() as u64);
        // SAFETY: plain clock read.
        let started_at = unsafe { pg_sys::GetCurrentTimestamp() };
        let started = Instant::now();
        let fetched = match read_token() {
            // Nothing to do until the configuration changes (a reload re-arms the sync).
            Err(message) => Err(Failure { message, retry: Retry::AtInterval }),
            Ok(token) => {
                match fetch_off_thread(token, started_at) {
                    None => return false,
                    Some(result) => result.map_err(Failure::from),
                }
            }
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let stored = fetched.and_then(|result| {
            fits_snapshot(result.shifts.len()).map_err(|message| Failure { message, retry: Retry::AtInterval })?;
            store_shifts(&result, started_at, duration_ms, interval)
                .map(|()| result)
                .map_err(|message| Failure { message, retry: Retry::Backoff })
        });
        // Fix (e2e): publish the synced rows before reporting the sync served, and count a
        // snapshot that cannot hold them (pg_oncall.max_shifts...) as a failed sync. Before,
        // refresh() and status() reported success while decisions kept the previous snapshot,
        // which then went stale with status() still saying stale = false. (The rows are stored,
        // so syncs_ok and syncs_failed both count this sync; retrying cannot help before a
        // restart with more capacity, hence AtInterval.)
        let stored = stored.and_then(|result| {
            self.reload_if_needed().map(|()| result).map_err(|message| Failure {
                message: format!("{message}; the synced shifts are in oncall.shifts but decisions keep the previous snapshot"),
                retry: Retry::AtInterval,
            })
        });
        match stored {
            Ok(result) => {
                if self.last_error.take().is_some() {
                    log!("pg_oncall: PagerDuty sync succeeded again ({} shifts)", result.shifts.len());
                }
                if result.split_by_policy {
                    log!("pg_oncall: more than 10,000 on-call entries: the sync was split by escalation policy");
                }
                if result.skipped_without_email > 0 {
                    warning!("pg_oncall: {} on-call entries had no user email and were skipped", result.skipped_without_email);
                }
                self.consecutive_failures = 0;
                self.next_sync = Instant::now() + interval;
                snapshot::sync_served(ticket, true);
            }
            Err(failure) => {
                self.consecutive_failures += 1;
                let delay = match failure.retry {
                    Retry::AtInterval => interval,
                    // PagerDuty's own reset wins over our schedule.
                    Retry::After(reset) => reset.max(Duration::from_secs(1)),
                    Retry::Backoff => {
                        pagerduty::backoff_delay(self.consecutive_failures, std::process::id() as u64).min(interval)
                    }
                };
                // One WARNING per distinct failure, not one per attempt.
                let log = self.last_error.as_deref() != Some(failure.message.as_str());
                record_failure(&failure.message, started_at, duration_ms, delay, log);
                self.last_error = Some(failure.message);
                self.next_sync = Instant::now() + delay;
                snapshot::sync_served(ticket, false);
            }
        }
        true
    }
}

/// Why a sync stored nothing, and when to try again.
struct Failure {
    message: String,
    retry: Retry,
}

enum Retry {
    /// A configuration problem or a permanent refusal (401, 403, 400): no retry storm.
    AtInterval,
    After(Duration),
    Backoff,
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Failure {
        let retry = match (e.is_permanent(), e.retry_after()) {
            (true, _) => Retry::AtInterval,
            (false, Some(reset)) => Retry::After(reset),
            (false, None) => Retry::Backoff,
        };
        Failure { message: e.to_string(), retry }
    }
}

/// The token, trimmed; errors say what is wrong with the file, never what is in it.
fn read_token() -> Result<String, String> {
    let path = guc::token_file();
    if path.is_empty() {
        return Err("no PagerDuty token: pg_oncall.pagerduty_token_file is not set".into());
    }
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Err(format!("the PagerDuty token file \"{path}\" is empty")),
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) => Err(format!("cannot read the PagerDuty token file \"{path}\": {}", e.kind())),
    }
}

/// Runs the HTTP fetch on a helper thread (which never touches PostgreSQL) while this thread
/// keeps answering SIGTERM; `None` means we were asked to stop.
fn fetch_off_thread(token: String, now: pg_sys::TimestampTz) -> Option<Result<SyncResult, SyncError>> {
    let config = SyncConfig {
        api_url: guc::api_url(),
        token,
        lookahead_us: i64::from(guc::LOOKAHEAD_S.get()) * 1_000_000,
        http_timeout: Duration::from_millis(guc::HTTP_TIMEOUT_MS.get() as u64),
        max_body_bytes: MAX_BODY_BYTES,
        max_rate_limit_wait: MAX_RATE_LIMIT_WAIT,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let thread_cancel = Arc::clone(&cancel);
    let now_us = unix_from_pg(now);
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new().name("pg_oncall http".into()).spawn(move || {
            let _ = done_tx.send(pagerduty::fetch_all(&config, now_us, &thread_cancel));
        })
    });
    if let Err(e) = spawned {
        return Some(Err(SyncError::Connection { attempts: 0, detail: format!("cannot start the HTTP thread: {e}") }));
    }
    loop {
        match done_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(result) => return Some(result),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Some(Err(SyncError::Connection { attempts: 0, detail: "the HTTP thread ended without an answer".into() }))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(50))) {
            cancel.store(true, Ordering::Relaxed);
            return None;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}

/// Threads inherit the signal mask: PostgreSQL's handlers must only ever run on our thread.
fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pthread_sigmask on the calling thread with valid set pointers; restored below.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let result = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        result
    }
}

fn ts_arg(us: Option<i64>) -> Option<TimestampWithTimeZone> {
    us.and_then(|us| TimestampWithTimeZone::try_from(pg_from_unix(us)).ok())
}

/// Refuses, before anything is replaced, a sync whose rows the snapshot could not hold.
fn fits_snapshot(pagerduty_shifts: usize) -> Result<(), String> {
    let manual = PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            select_one::<i64>("SELECT count(*) FROM oncall.shifts WHERE source = 'manual' AND (ends_at IS NULL OR ends_at > now())")
        })
    })
    .catch_others(|e| Err(caught_message(&e)))
    .execute()?
    .unwrap_or(0) as usize;
    let capacity = guc::MAX_SHIFTS.get() as usize;
    if pagerduty_shifts + manual > capacity {
        return Err(format!(
            "the snapshot does not fit: PagerDuty returned {pagerduty_shifts} shifts and {manual} manual ones are active, \
             more than pg_oncall.max_shifts = {capacity} (raise it and restart); the previous shifts are kept"
        ));
    }
    Ok(())
}

/// Replaces the PagerDuty rows in one transaction; manual rows are untouched.
fn store_shifts(result: &SyncResult, started_at: pg_sys::TimestampTz, duration_ms: f64, interval: Duration) -> Result<(), String> {
    let n = result.shifts.len();
    let mut emails = Vec::with_capacity(n);
    let mut user_ids = Vec::with_capacity(n);
    let mut policies = Vec::with_capacity(n);
    let mut levels = Vec::with_capacity(n);
    let mut schedules = Vec::with_capacity(n);
    let mut starts = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    for s in &result.shifts {
        emails.push(s.email.clone());
        user_ids.push(s.user_id.clone());
        policies.push(s.escalation_policy_id.clone());
        levels.push(s.escalation_level);
        schedules.push(s.schedule_id.clone());
        starts.push(ts_arg(s.start_us));
        ends.push(ts_arg(s.end_us));
    }
    let pages = result.pages as i32;
    let requests = result.requests as i32;
    let next_ms = interval.as_millis() as f64;
    let started = TimestampWithTimeZone::try_from(started_at).ok();
    let stored = PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
                client.update("DELETE FROM oncall.shifts WHERE source = 'pagerduty'", None, &[])?;
                client.update(
                    "INSERT INTO oncall.shifts (source, email, pagerduty_user_id, escalation_policy_id, escalation_level,
                                                schedule_id, starts_at, ends_at, synced_at)
                     SELECT 'pagerduty', e, u, p, l, s, st, en, $8
                       FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[], $7::timestamptz[])
                            AS t(e, u, p, l, s, st, en)",
                    None,
                    &[
                        emails.clone().into(),
                        user_ids.clone().into(),
                        policies.clone().into(),
                        levels.clone().into(),
                        schedules.clone().into(),
                        starts.clone().into(),
                        ends.clone().into(),
                        started.into(),
                    ],
                )?;
                client.update(
                    "UPDATE oncall.sync_state SET token_configured = true, last_attempt_at = $1, last_success_at = $1,
                            last_error = NULL, shifts = $2, pages = $3, requests = $4, duration_ms = $5,
                            next_attempt_at = clock_timestamp() + make_interval(secs => $6 / 1000.0),
                            syncs_ok = syncs_ok + 1",
                    None,
                    &[started.into(), (n as i32).into(), pages.into(), requests.into(), duration_ms.into(), next_ms.into()],
                )?;
                Ok(())
            })
        })
        .map_err(|e| e.to_string())
    })
    .catch_others(|e| Err(format!("storing the synced shifts failed: {}", caught_message(&e))))
    .execute();
    stored
}

fn record_failure(message: &str, started_at: pg_sys::TimestampTz, duration_ms: f64, retry: Duration, log: bool) {
    if log {
        warning!("pg_oncall: PagerDuty sync failed: {message}");
    }
    let token_ok = read_token().is_ok();
    let started = TimestampWithTimeZone::try_from(started_at).ok();
    let message = message.to_owned();
    let retry_ms = retry.as_millis() as f64;
    PgTryBuilder::new(|| {
        BackgroundWorker::transaction(|| {
            Spi::run_with_args(
                "UPDATE oncall.sync_state SET token_configured = $1, last_attempt_at = $2, last_error = $3,
                        duration_ms = $4, next_attempt_at = clock_timestamp() + make_interval(secs => $5 / 1000.0),
                        syncs_failed = syncs_failed + 1",
                &[token_ok.into(), started.into(), message.clone().into(), duration_ms.into(), retry_ms.into()],
            )
        })
    })
    .catch_others(|e| {
        warning!("pg_oncall: could not record the sync failure: {}", caught_message(&e));
        Ok(())
    })
    .execute()
    .ok();
}

fn caught_message(e: &pgrx::pg_sys::panic::CaughtError) -> String {
    match e {
        pgrx::pg_sys::panic::CaughtError::PostgresError(report)
        | pgrx::pg_sys::panic::CaughtError::ErrorReport(report) => report.message().to_owned(),
        pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
    }
}

/// Reads the three tables into a private snapshot and publishes it whole.
fn load_snapshot() -> Result<(), String> {
    let loaded = PgTryBuilder::new(|| BackgroundWorker::transaction(read_tables))
        .catch_others(|e| Err(format!("reading the pg_oncall tables failed: {}", caught_message(&e))))
        .execute()?;
    let (roles, identities, shifts) = loaded.counts();
    snapshot::publish(loaded).map_err(|o| {
        format!(
            "the snapshot does not fit: {} {} > capacity {} (raise {} and restart)",
            o.needed, o.what, o.capacity, o.setting
        )
    })?;
    debug1!("pg_oncall: snapshot loaded: {roles} gated roles, {identities} identities, {shifts} shifts");
    Ok(())
}

fn read_tables() -> Result<Snapshot, String> {
    Spi::connect(|client| -> Result<Snapshot, String> {
        let spi = |e: pgrx::spi::Error| e.to_string();
        let mut snap = Snapshot::default();
        snap.last_sync_success = client
            .select("SELECT (extract(epoch FROM last_success_at) * 1000000)::int8 FROM oncall.sync_state", None, &[])
            .map_err(spi)?
            .first()
            .get_one::<i64>()
            .map_err(spi)?;
        let roles = client
            .select(
                "SELECT g.role_name::text, coalesce(r.oid, 0::oid), g.escalation_policy_ids, g.schedule_ids,
                        g.min_escalation_level, g.max_escalation_level, g.gate_login
                   FROM oncall.gated_roles AS g LEFT JOIN pg_catalog.pg_roles AS r ON r.rolname = g.role_name
                  ORDER BY g.role_name",
                None,
                &[],
            )
            .map_err(spi)?;
        for row in roles {
            let row = GatedRoleRow {
                name: row.get::<String>(1).map_err(spi)?.unwrap_or_default(),
                oid: row.get::<pg_sys::Oid>(2).map_err(spi)?.unwrap_or(pg_sys::InvalidOid),
                escalation_policy_ids: row.get::<Vec<String>>(3).map_err(spi)?,
                schedule_ids: row.get::<Vec<String>>(4).map_err(spi)?,
                min_escalation_level: row.get::<i32>(5).map_err(spi)?,
                max_escalation_level: row.get::<i32>(6).map_err(spi)?,
                gate_login: row.get::<bool>(7).map_err(spi)?.unwrap_or(false),
            };
            snap.add_role(row).map_err(|t| format!("a gated role's {} is too long", t.0))?;
        }
        let identities = client
            .select("SELECT role_name::text, email FROM oncall.identities ORDER BY role_name", None, &[])
            .map_err(spi)?;
        for row in identities {
            let role: String = row.get(1).map_err(spi)?.unwrap_or_default();
            let email: String = row.get(2).map_err(spi)?.unwrap_or_default();
            snap.add_identity(&role, &normalize_email(&email))
                .map_err(|t| format!("identity of role {role}: {} too long", t.0))?;
        }
        // Rows that can never grant again are left out; open ends are NULL (or infinite).
        let shifts = client
            .select(
                "SELECT source, email, escalation_policy_id, schedule_id, escalation_level,
                        CASE WHEN isfinite(starts_at) THEN (extract(epoch FROM starts_at) * 1000000)::int8 END,
                        CASE WHEN isfinite(ends_at) THEN (extract(epoch FROM ends_at) * 1000000)::int8 END
                   FROM oncall.shifts
                  WHERE (ends_at IS NULL OR ends_at > now()) AND (starts_at IS NULL OR starts_at < 'infinity')
                  -- A deterministic order: an unchanged table then publishes nothing new.
                  ORDER BY email, starts_at, ends_at, escalation_policy_id, schedule_id, escalation_level, source",
                None,
                &[],
            )
            .map_err(spi)?;
        for row in shifts {
            let source: String = row.get(1).map_err(spi)?.unwrap_or_default();
            let email: String = row.get(2).map_err(spi)?.unwrap_or_default();
            let policy: Option<String> = row.get(3).map_err(spi)?;
            let schedule: Option<String> = row.get(4).map_err(spi)?;
            let too_long = |what: &str| format!("a shift's {what} is too long");
            snap.add_shift(ShiftEntry {
                email: FixedStr::new(Some(&normalize_email(&email))).ok_or_else(|| too_long("email"))?,
                escalation_policy_id: FixedStr::new(policy.as_deref()).ok_or_else(|| too_long("escalation_policy_id"))?,
                schedule_id: FixedStr::new(schedule.as_deref()).ok_or_else(|| too_long("schedule_id"))?,
                escalation_level: row.get::<i32>(5).map_err(spi)?,
                starts_at: row.get::<i64>(6).map_err(spi)?,
                ends_at: row.get::<i64>(7).map_err(spi)?,
                // The table's CHECK admits only the two; were it bypassed, the stricter kind applies.
                source: Source::from_name(&source).unwrap_or(Source::PagerDuty),
            });
        }
        Ok(snap)
    })
}
