//! How backends reach the sync worker: its latch, reload requests (a committed change to the
//! tables), sync requests with tickets (`oncall.refresh()`), all in a small shared segment.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

use pgrx::pg_sys;

use crate::pg::shmem::Segment;
use crate::snapshot;

pub static SEGMENT: Segment = Segment { name: c"pg_oncall worker", size, lwlocks: 0, attach };

struct Shared {
    worker_latch: AtomicPtr<pg_sys::Latch>,
    worker_pid: AtomicI32,
    reload_requests: AtomicU64,
    sync_requests: AtomicU64,
    sync_served: AtomicU64,
    sync_served_ok: AtomicBool,
}

static mut SHARED: *mut Shared = null_mut();

fn size() -> usize {
    std::mem::size_of::<Shared>()
}

fn attach(base: *mut u8, created: bool) {
    // SAFETY: the segment is `size()` bytes; zeroed is a valid `Shared` (no worker, no requests).
    unsafe {
        if created {
            std::ptr::write_bytes(base, 0, size());
        }
        SHARED = base as *mut Shared;
    }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: set once per process at shmem startup; every field is atomic.
    unsafe { SHARED.as_ref() }
}

/// The worker announces itself (and, with null/0, its exit) so that backends can wake it.
pub fn register_worker(latch: *mut pg_sys::Latch, pid: i32) {
    if let Some(s) = shared() {
        s.worker_latch.store(latch, Ordering::Release);
        s.worker_pid.store(pid, Ordering::Release);
    }
}

pub fn worker_pid() -> Option<i32> {
    shared().map(|s| s.worker_pid.load(Ordering::Acquire)).filter(|&p| p != 0)
}

/// Wakes the worker (new elevation events to record).
pub fn wake_worker() {
    if let Some(s) = shared() {
        wake(s);
    }
}

fn wake(s: &Shared) {
    let latch = s.worker_latch.load(Ordering::Acquire);
    if !latch.is_null() {
        // SAFETY: the latch is the worker's PGPROC latch, in shared memory for the cluster's
        // lifetime; SetLatch on another process's latch is what it is for.
        unsafe { pg_sys::SetLatch(latch) };
    }
}

/// Asks the worker to reload the snapshot from the tables (after a committed change).
pub fn request_reload() {
    if let Some(s) = shared() {
        s.reload_requests.fetch_add(1, Ordering::AcqRel);
        wake(s);
    }
}

pub fn reload_requests() -> u64 {
    shared().map_or(0, |s| s.reload_requests.load(Ordering::Acquire))
}

/// Asks the worker to sync now; returns the ticket to wait for.
pub fn request_sync() -> Option<u64> {
    let s = shared()?;
    let ticket = s.sync_requests.fetch_add(1, Ordering::AcqRel) + 1;
    wake(s);
    Some(ticket)
}

pub fn sync_requests() -> u64 {
    shared().map_or(0, |s| s.sync_requests.load(Ordering::Acquire))
}

/// The worker finished a sync that began after every request up to `ticket`.
pub fn sync_served(ticket: u64, ok: bool) {
    if let Some(s) = shared() {
        s.sync_served_ok.store(ok, Ordering::Release);
        s.sync_served.fetch_max(ticket, Ordering::AcqRel);
    }
}

/// `Some(ok)` once a sync covering `ticket` finished.
pub fn sync_result(ticket: u64) -> Option<bool> {
    let s = shared()?;
    (s.sync_served.load(Ordering::Acquire) >= ticket).then(|| s.sync_served_ok.load(Ordering::Acquire))
}

/// What to do once the current transaction commits (nothing if it aborts).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CommitAction {
    None,
    /// The tables changed: the worker reloads them.
    Reload,
    /// The extension was dropped: nothing is gated any more, now or after a restart.
    Clear,
}

thread_local! {
    static AT_COMMIT: std::cell::Cell<CommitAction> = const { std::cell::Cell::new(CommitAction::None) };
    static XACT_CALLBACK_REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Schedules `action` for this transaction's commit; the strongest action requested wins.
/// Waking the worker earlier would let it load the rows as they were.
pub fn at_commit(action: CommitAction) {
    AT_COMMIT.set(AT_COMMIT.get().max(action));
    if !XACT_CALLBACK_REGISTERED.replace(true) {
        // SAFETY: registers a process-lifetime callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_end), null_mut()) };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_xact_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => match AT_COMMIT.replace(CommitAction::None) {
            CommitAction::None => {}
            CommitAction::Reload => request_reload(),
            CommitAction::Clear => {
                snapshot::clear();
                request_reload();
            }
        },
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => AT_COMMIT.set(CommitAction::None),
        _ => {}
    }
}
