//! The PagerDuty request side of a sync: the token file, and the fetch run on a helper thread
//! (which never touches PostgreSQL) while the worker's own thread keeps answering signals and
//! serving snapshot reloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oncall_core::pagerduty::{self, SyncConfig, SyncError, SyncResult};
use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys;

use crate::guc;

/// Cap on waiting out PagerDuty's `ratelimit-reset` inside one sync.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(120);
const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
/// How often the worker looks up from a request in flight (signals, reloads).
const POLL: Duration = Duration::from_millis(50);

/// The token, trimmed; errors say what is wrong with the file, never what is in it.
pub fn read_token() -> Result<String, String> {
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

/// Fetches every on-call entry from `now_us` to `now_us + lookahead` on a helper thread.
/// Meanwhile this thread honours SIGHUP and calls `meanwhile` every 50 ms (the worker serves
/// snapshot reloads there, so table changes never wait for the network). `None` means SIGTERM.
pub fn fetch_off_thread(token: String, now_us: i64, mut meanwhile: impl FnMut()) -> Option<Result<SyncResult, SyncError>> {
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
    let spawned = with_signals_blocked(|| {
        std::thread::Builder::new().name("pg_oncall http".into()).spawn(move || {
            let _ = done_tx.send(pagerduty::fetch_all(&config, now_us, &thread_cancel));
        })
    });
    if let Err(e) = spawned {
        return Some(Err(SyncError::Connection { attempts: 0, detail: format!("cannot start the HTTP thread: {e}") }));
    }
    loop {
        match done_rx.recv_timeout(POLL) {
            Ok(result) => return Some(result),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Some(Err(SyncError::Connection { attempts: 0, detail: "the HTTP thread ended without an answer".into() }))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !BackgroundWorker::wait_latch(Some(Duration::ZERO)) {
            cancel.store(true, Ordering::Relaxed);
            return None;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: outside any transaction.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        meanwhile();
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
