//! The PagerDuty request side of a sync: the token files, and the fetch (on-call entries, then
//! open incidents when they are wanted) run on a helper thread, which never touches PostgreSQL,
//! while the worker's own thread keeps answering signals and serving snapshot reloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oncall_core::pagerduty::{self, IncidentSyncResult, SyncConfig, SyncError, SyncResult};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;

use crate::guc;

/// Cap on waiting out PagerDuty's `ratelimit-reset` inside one sync.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// How often the worker looks up from a request in flight (signals, reloads).
const POLL: Duration = Duration::from_millis(50);

/// The sync's (read-only) token, trimmed; errors say what is wrong with the file, never what is
/// in it.
pub fn read_token() -> Result<String, String> {
    guc::read_token_file("token", "pg_oncall.pagerduty_token_file", &guc::token_file())
}

/// What one sync fetched: the on-call entries, and the open incidents when they were wanted and
/// the on-call part succeeded (a PagerDuty that fails one is not asked the other).
pub struct Fetched {
    pub shifts: Result<SyncResult, SyncError>,
    pub incidents: Option<Result<IncidentSyncResult, SyncError>>,
}

/// Fetches every on-call entry from `now_us` to `now_us + lookahead`, then, with `incidents`,
/// every open incident, on a helper thread. Meanwhile this thread honours SIGHUP and calls
/// `meanwhile` every 50 ms, saying whether the configuration was just reloaded (the worker
/// serves snapshot reloads there, so table changes never wait for the network). `None` means
/// SIGTERM.
pub fn fetch_off_thread(token: String, now_us: i64, incidents: bool, mut meanwhile: impl FnMut(bool)) -> Option<Fetched> {
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
    let spawned = crate::pg::thread::spawn("pg_oncall http", move || {
        let shifts = pagerduty::fetch_all(&config, now_us, &thread_cancel);
        let incidents = (incidents && shifts.is_ok()).then(|| pagerduty::fetch_open_incidents(&config, now_us, &thread_cancel));
        let _ = done_tx.send(Fetched { shifts, incidents });
    });
    if let Err(e) = spawned {
        let detail = format!("cannot start the HTTP thread: {e}");
        return Some(Fetched { shifts: Err(SyncError::Connection { attempts: 0, detail }), incidents: None });
    }
    loop {
        match done_rx.recv_timeout(POLL) {
            Ok(fetched) => return Some(fetched),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let detail = "the HTTP thread ended without an answer".to_owned();
                return Some(Fetched { shifts: Err(SyncError::Connection { attempts: 0, detail }), incidents: None });
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !BackgroundWorker::wait_latch(Some(Duration::ZERO)) {
            cancel.store(true, Ordering::Relaxed);
            return None;
        }
        let reloaded = BackgroundWorker::sighup_received();
        if reloaded {
            // SAFETY: outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        meanwhile(reloaded);
    }
}
