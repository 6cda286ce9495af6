//! The bounded queue of notes between backends (producers, at the start of an elevation) and
//! the worker (the one consumer), and the notes' counters for `oncall.status()`. A full queue
//! drops its oldest note and counts it: the newest elevations are the ones a responder reads.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::pg_sys;

use crate::guc;
use crate::pg::shmem::{self, FixedStr, Segment};

/// PagerDuty incident ids are short; a longer one is cut (and then not found: counted failed).
pub const INCIDENT_ID_LEN: usize = 64;
/// Identity, role, cluster, database, time and a reason of up to 1,000 bytes fit.
pub const CONTENT_LEN: usize = 2048;
pub const ERROR_LEN: usize = 512;

/// One note to post on one incident for one elevation.
#[derive(Clone, Copy)]
pub struct Note {
    pub elevation: u64,
    pub incident_id: FixedStr<INCIDENT_ID_LEN>,
    pub content: FixedStr<CONTENT_LEN>,
}

pub static SEGMENT: Segment = Segment { name: c"pg_oncall note queue", size, lwlocks: 1, attach };

struct Shared {
    lock: *mut pg_sys::LWLock,
    capacity: usize,
    /// Notes `head..tail` (modulo capacity) are queued; both change only under the lock.
    head: AtomicU64,
    tail: AtomicU64,
    posted: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// The worker can post (annotate_incidents on, a write token, a From email).
    enabled: AtomicBool,
    /// Guards `last_error`, which the worker's helper thread writes too (it cannot take an
    /// LWLock): held only to copy the text.
    error_lock: AtomicBool,
    last_error: FixedStr<ERROR_LEN>,
}

static mut SHARED: *mut Shared = null_mut();

fn capacity() -> usize {
    guc::NOTE_QUEUE_SIZE.get() as usize
}

fn notes_offset() -> usize {
    std::mem::size_of::<Shared>().next_multiple_of(8)
}

fn size() -> usize {
    notes_offset() + capacity() * std::mem::size_of::<Note>()
}

fn attach(base: *mut u8, created: bool) {
    let shared = base as *mut Shared;
    // SAFETY: the segment is `size()` bytes; the creator initialises the header before any
    // backend exists; SHARED is set once per process.
    unsafe {
        if created {
            std::ptr::write_bytes(base, 0, notes_offset()); // zero positions, counters and flags
            (*shared).lock = shmem::lwlock(&SEGMENT);
            (*shared).capacity = capacity();
            (*shared).last_error = FixedStr::truncated(None);
        }
        SHARED = shared;
    }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: set once per process at shmem startup; mutable fields are atomics, under the
    // LWLock, or under `error_lock`.
    unsafe { SHARED.as_ref() }
}

fn slot(shared: &Shared, index: u64) -> *mut Note {
    let base = shared as *const Shared as *mut u8;
    // SAFETY: `index % capacity` is within the notes array laid out after the header.
    unsafe { base.add(notes_offset()).cast::<Note>().add((index % shared.capacity as u64) as usize) }
}

/// Queues `notes` for the worker, dropping (and counting) the oldest ones when full, and wakes it.
pub fn push(notes: &[Note]) {
    let Some(s) = shared() else { return };
    if notes.is_empty() {
        return;
    }
    let mut dropped = 0;
    // SAFETY: the LWLock serializes producers and the consumer; the slots are within the segment.
    unsafe {
        pg_sys::LWLockAcquire(s.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let (mut head, mut tail) = (s.head.load(Ordering::Relaxed), s.tail.load(Ordering::Relaxed));
        for note in notes {
            if tail - head == s.capacity as u64 {
                head += 1;
                dropped += 1;
            }
            slot(s, tail).write(*note);
            tail += 1;
        }
        s.head.store(head, Ordering::Release);
        s.tail.store(tail, Ordering::Release);
        pg_sys::LWLockRelease(s.lock);
    }
    s.dropped.fetch_add(dropped, Ordering::Relaxed);
}

/// Takes every queued note, oldest first.
pub fn take() -> Vec<Note> {
    let Some(s) = shared() else { return Vec::new() };
    // SAFETY: as in `push`.
    unsafe {
        pg_sys::LWLockAcquire(s.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let (head, tail) = (s.head.load(Ordering::Relaxed), s.tail.load(Ordering::Relaxed));
        let notes = (head..tail).map(|i| slot(s, i).read()).collect();
        s.head.store(tail, Ordering::Release);
        pg_sys::LWLockRelease(s.lock);
        notes
    }
}

/// A hint for the worker (which takes under the lock): nothing queued right now.
pub fn is_empty() -> bool {
    shared().is_none_or(|s| s.tail.load(Ordering::Acquire) == s.head.load(Ordering::Acquire))
}

/// The counters for `oncall.status()`. Safe from any thread of any process.
pub enum Outcome {
    Posted,
    Failed,
    /// Lost to a full queue (the worker's own list of notes waiting for a retry is bounded too).
    Dropped,
}

pub fn count(outcome: Outcome, n: u64) {
    if let Some(s) = shared() {
        let counter = match outcome {
            Outcome::Posted => &s.posted,
            Outcome::Failed => &s.failed,
            Outcome::Dropped => &s.dropped,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub fn set_enabled(enabled: bool) {
    if let Some(s) = shared() {
        s.enabled.store(enabled, Ordering::Relaxed);
    }
}

fn with_error<R>(s: &Shared, f: impl FnOnce(*mut FixedStr<ERROR_LEN>) -> R) -> R {
    while s.error_lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        std::hint::spin_loop();
    }
    let result = f(&s.last_error as *const FixedStr<ERROR_LEN> as *mut FixedStr<ERROR_LEN>);
    s.error_lock.store(false, Ordering::Release);
    result
}

/// Records why a note could not be posted. Safe from any thread of any process.
pub fn set_last_error(message: &str) {
    if let Some(s) = shared() {
        let text = FixedStr::truncated(Some(message));
        // SAFETY: `error_lock` is held: nobody else reads or writes the text meanwhile.
        with_error(s, |error| unsafe { error.write(text) });
    }
}

/// `(enabled, posted, failed, dropped, last_error)` since the server started.
pub fn status() -> (bool, u64, u64, u64, Option<String>) {
    let Some(s) = shared() else { return (false, 0, 0, 0, None) };
    // SAFETY: `error_lock` is held: the text is not being written.
    let error = with_error(s, |error| unsafe { (*error).get().map(str::to_owned) });
    (
        s.enabled.load(Ordering::Relaxed),
        s.posted.load(Ordering::Relaxed),
        s.failed.load(Ordering::Relaxed),
        s.dropped.load(Ordering::Relaxed),
        error,
    )
}
