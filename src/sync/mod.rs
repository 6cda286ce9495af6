//! The sync: PagerDuty → `oncall.shifts` (and open incidents → `oncall.incidents` when
//! `pg_oncall.sync_incidents` wants them). A launcher keeps one sync worker alive in
//! `pg_oncall.database`; the worker syncs every `refresh_interval` (requests on a helper
//! thread, `http`), writes the rows (`store`), reloads the snapshot whenever the tables change
//! (`signal` carries the wake-ups from backends), also while a request is in flight, and hands
//! the elevations' records and notes on to where they go.

use std::time::{Duration, Instant};

use oncall_core::pagerduty::{self, SyncError};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::guc;
use crate::pg::time::unix_from_pg;
use crate::snapshot;

pub(crate) mod http;
pub mod launcher;
pub mod signal;
mod store;

const LIBRARY: &str = "pg_oncall";
/// How often a worker with nothing to do re-checks for its database or extension.
const IDLE_RECHECK: Duration = Duration::from_secs(5);
/// How often a standby reloads the replicated tables (replication fires no trigger).
const STANDBY_RELOAD: Duration = Duration::from_secs(1);

/// Exit so that the postmaster restarts us (a clean exit would unregister a static worker).
#[allow(unreachable_code)] // proc_exit's binding says `!` on some majors and `()` on others
fn exit_for_restart() -> ! {
    // SAFETY: proc_exit runs the registered exit callbacks and does not return.
    unsafe { pg_sys::proc_exit(1) };
    unreachable!("proc_exit returned")
}

fn extension_installed() -> bool {
    BackgroundWorker::transaction(|| {
        Spi::connect(|client| {
            client
                .select("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension AS e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_oncall'::pg_catalog.name)", None, &[])?
                .first()
                .get_one::<bool>()
        })
        .ok()
        .flatten()
        .unwrap_or(false)
    })
}

fn in_recovery() -> bool {
    // SAFETY: reads shared recovery state; callable any time after startup.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// Whatever a user plants in `public`, the worker's own statements resolve names in pg_catalog.
fn pin_search_path() {
    // SAFETY: sets a session-level value of a core setting, outside any transaction.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_oncall_sync_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_owned();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    pin_search_path();
    // SAFETY: MyLatch/MyProcPid are this process's own, valid for its lifetime; the exit
    // callback clears them from shared memory so nobody signals a recycled latch.
    unsafe {
        signal::register_worker(pg_sys::MyLatch, pg_sys::MyProcPid);
        pg_sys::before_shmem_exit(Some(unregister_worker), pg_sys::Datum::from(0));
    }
    let mut worker = SyncWorker::new();
    let mut recorder = crate::elevations::store::Recorder::new();
    let mut said_missing = false;
    let mut saw_extension = false;
    loop {
        if BackgroundWorker::sighup_received() {
            // SAFETY: outside any transaction, as ProcessConfigFile requires.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            worker.next_sync = Instant::now();
            worker.notes.settings_changed();
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
        if !in_recovery() {
            recorder.drain();
        }
        worker.notes.pump();
        if worker.sync_due() {
            if !worker.sync() {
                return;
            }
            let _ = worker.reload_if_needed();
        }
        if !BackgroundWorker::wait_latch(Some(worker.sleep_time())) {
            return;
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn unregister_worker(_code: i32, _arg: pg_sys::Datum) {
    signal::register_worker(std::ptr::null_mut(), 0);
}

struct SyncWorker {
    notes: crate::notes::post::Poster,
    /// The last sync asked PagerDuty for the open incidents.
    fetched_incidents: bool,
    reloads_seen: Option<u64>,
    syncs_seen: u64,
    next_sync: Instant,
    consecutive_failures: u32,
    last_error: Option<String>,
    next_standby_reload: Instant,
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

impl Failure {
    /// The same failure, said to be the incident part's.
    fn about_incidents(self) -> Failure {
        Failure { message: format!("open incidents: {}", self.message), ..self }
    }
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

impl SyncWorker {
    fn new() -> SyncWorker {
        SyncWorker {
            notes: crate::notes::post::Poster::new(),
            fetched_incidents: false,
            reloads_seen: None,
            syncs_seen: signal::sync_requests(),
            next_sync: Instant::now(),
            consecutive_failures: 0,
            last_error: None,
            next_standby_reload: Instant::now(),
        }
    }

    /// Reloads the snapshot when a committed change asked for it (or, on a standby, when the
    /// poll is due). Err when a requested reload failed: the previous snapshot stays published.
    fn reload_if_needed(&mut self) -> Result<(), String> {
        let requested = signal::reload_requests();
        let standby_due = in_recovery() && Instant::now() >= self.next_standby_reload;
        if self.reloads_seen == Some(requested) && !standby_due {
            return Ok(());
        }
        self.next_standby_reload = Instant::now() + STANDBY_RELOAD;
        self.reloads_seen = Some(requested);
        snapshot::load::from_tables().inspect_err(|message| {
            // Said once per change, not once per wake-up.
            log!("pg_oncall: {message}; keeping the previous snapshot");
        })
    }

    /// A sync is due at its time, when asked for, and as soon as open incidents are wanted
    /// that the last sync did not fetch (a rule with `require_incident` just created): such a
    /// rule should not wait a `refresh_interval` for its first incidents.
    fn sync_due(&self) -> bool {
        !in_recovery()
            && (Instant::now() >= self.next_sync
                || signal::sync_requests() != self.syncs_seen
                || (!self.fetched_incidents && snapshot::incidents_wanted()))
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
        let ticket = signal::sync_requests();
        self.syncs_seen = ticket;
        let interval = Duration::from_millis(guc::REFRESH_INTERVAL_MS.get() as u64);
        let want_incidents = snapshot::incidents_wanted();
        self.fetched_incidents = want_incidents;
        // SAFETY: plain clock read.
        let started_at = unsafe { pg_sys::GetCurrentTimestamp() };
        let started = Instant::now();
        let fetched = match http::read_token() {
            // Nothing to do until the configuration changes (a reload re-arms the sync).
            Err(message) => Err(Failure { message, retry: Retry::AtInterval }),
            Ok(token) => match http::fetch_off_thread(token, unix_from_pg(started_at), want_incidents, |reloaded| {
                let _ = self.reload_if_needed();
                if reloaded {
                    self.notes.settings_changed();
                }
                self.notes.pump();
            }) {
                None => return false,
                Some(http::Fetched { shifts, incidents }) => shifts.map(|shifts| (shifts, incidents)).map_err(Failure::from),
            },
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The on-call part decides whether anything is stored; a failed incident part keeps the
        // previous incidents (which go stale on their own) and makes the sync a failed one.
        let stored = fetched.and_then(|(result, incidents)| {
            store::fits_snapshot(result.shifts.len()).map_err(|message| Failure { message, retry: Retry::AtInterval })?;
            let incidents: Option<Result<_, Failure>> = incidents.map(|fetched| {
                let fetched = fetched.map_err(|e| Failure::from(e).about_incidents())?;
                store::incidents_fit_snapshot(&fetched)
                    .map_err(|message| Failure { message, retry: Retry::AtInterval }.about_incidents())?;
                Ok(fetched)
            });
            let outcome = match &incidents {
                None => store::IncidentsOutcome::NotSynced,
                Some(Ok(fetched)) => store::IncidentsOutcome::Synced(fetched),
                Some(Err(failure)) => store::IncidentsOutcome::Failed(&failure.message),
            };
            let next = match &incidents {
                Some(Err(failure)) => self.retry_delay(failure, interval, self.consecutive_failures + 1),
                _ => interval,
            };
            store::store_sync(&result, outcome, started_at, duration_ms, next)
                .map_err(|message| Failure { message, retry: Retry::Backoff })?;
            Ok((result, incidents))
        });
        // A sync is served only once decisions use what it stored; a snapshot that cannot
        // hold the rows (stored, but over pg_oncall.max_shifts) counts as failed, and retrying
        // cannot help before a restart with more capacity.
        let stored = stored.and_then(|result| {
            self.reload_if_needed().map(|()| result).map_err(|message| Failure {
                message: format!("{message}; the synced shifts are in oncall.shifts but decisions keep the previous snapshot"),
                retry: Retry::AtInterval,
            })
        });
        // The shifts were stored, and only the incidents failed: recorded with them already.
        let (stored, recorded) = match stored {
            Ok((_, Some(Err(failure)))) => (Err(failure), true),
            Ok((result, incidents)) => (Ok((result, incidents)), true),
            Err(failure) => (Err(failure), false),
        };
        match stored {
            Ok((result, incidents)) => {
                if self.last_error.take().is_some() {
                    log!("pg_oncall: PagerDuty sync succeeded again ({} shifts)", result.shifts.len());
                }
                if result.split_by_policy {
                    log!("pg_oncall: more than 10,000 on-call entries: the sync was split by escalation policy");
                }
                if result.skipped_without_email > 0 {
                    warning!("pg_oncall: {} on-call entries had no user email and were skipped", result.skipped_without_email);
                }
                if let Some(Ok(incidents)) = incidents {
                    if incidents.split_by_time {
                        log!("pg_oncall: more than 10,000 open incidents: the incident sync went on by creation time");
                    }
                    if incidents.assignees_without_email > 0 {
                        warning!(
                            "pg_oncall: {} incident assignees had no user email and count as nobody",
                            incidents.assignees_without_email
                        );
                    }
                }
                self.consecutive_failures = 0;
                self.next_sync = Instant::now() + interval;
                signal::sync_served(ticket, true);
            }
            Err(failure) => {
                self.consecutive_failures += 1;
                let delay = self.retry_delay(&failure, interval, self.consecutive_failures);
                // One WARNING per distinct failure, not one per attempt.
                let log = self.last_error.as_deref() != Some(failure.message.as_str());
                if recorded {
                    if log {
                        warning!("pg_oncall: PagerDuty sync failed: {}", failure.message);
                    }
                } else {
                    store::record_failure(&failure.message, started_at, duration_ms, delay, log);
                }
                self.last_error = Some(failure.message);
                self.next_sync = Instant::now() + delay;
                signal::sync_served(ticket, false);
            }
        }
        true
    }

    /// When to try again after `failure`, the `failures`-th in a row.
    fn retry_delay(&self, failure: &Failure, interval: Duration, failures: u32) -> Duration {
        match failure.retry {
            Retry::AtInterval => interval,
            // PagerDuty's own reset wins over our schedule.
            Retry::After(reset) => reset.max(Duration::from_secs(1)),
            Retry::Backoff => pagerduty::backoff_delay(failures, std::process::id() as u64).min(interval),
        }
    }
}
