//! The bounded queue of elevation events between backends (producers, on the gate's path) and
//! the worker (the one consumer). A full queue drops the new event and counts it. Elevation ids come from here too: unique across restarts, because the
//! counter starts at the server's start time in milliseconds × 1,000.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicU64, Ordering};

use pgrx::pg_sys;

use super::EndReason;
use crate::guc;
use crate::pg::shmem::{self, FixedStr, Segment};
use crate::pg::time;

pub const NAME_LEN: usize = pg_sys::NAMEDATALEN as usize;
pub const REASON_LEN: usize = 1000;
pub const INCIDENTS_LEN: usize = 512;

/// An elevation began (everything the record needs) or ended (`end_reason` set).
#[derive(Clone, Copy)]
pub struct Event {
    pub id: u64,
    pub end_reason: Option<EndReason>,
    /// started_at for a start, ended_at for an end (µs since 1970).
    pub at: i64,
    pub statements: u64,
    pub backend_pid: i32,
    pub session_user: FixedStr<NAME_LEN>,
    pub identity: FixedStr<256>,
    pub role: FixedStr<NAME_LEN>,
    pub route: FixedStr<16>,
    pub database: FixedStr<NAME_LEN>,
    pub client_addr: FixedStr<64>,
    pub application_name: FixedStr<NAME_LEN>,
    pub reason: FixedStr<REASON_LEN>,
    /// Incident ids, comma-separated.
    pub incident_ids: FixedStr<INCIDENTS_LEN>,
}

impl Event {
    /// The start of elevation `id`, with its details still to fill in.
    pub fn start(id: u64, at: i64, backend_pid: i32) -> Event {
        Event { end_reason: None, ..Event::end(id, at, EndReason::Reset, 0, backend_pid) }
    }

    pub fn end(id: u64, at: i64, reason: EndReason, statements: u64, backend_pid: i32) -> Event {
        let none = FixedStr::truncated(None);
        Event {
            id,
            end_reason: Some(reason),
            at,
            statements,
            backend_pid,
            session_user: none,
            identity: FixedStr::truncated(None),
            role: none,
            route: FixedStr::truncated(None),
            database: none,
            client_addr: FixedStr::truncated(None),
            application_name: none,
            reason: FixedStr::truncated(None),
            incident_ids: FixedStr::truncated(None),
        }
    }
}

pub static SEGMENT: Segment = Segment { name: c"pg_oncall elevation queue", size, lwlocks: 1, attach };

struct Shared {
    lock: *mut pg_sys::LWLock,
    capacity: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
    /// Events `head..tail` (modulo capacity) are queued; both change only under the lock.
    head: AtomicU64,
    tail: AtomicU64,
}

static mut SHARED: *mut Shared = null_mut();

fn capacity() -> usize {
    guc::ELEVATION_QUEUE_SIZE.get() as usize
}

fn events_offset() -> usize {
    std::mem::size_of::<Shared>().next_multiple_of(8)
}

fn size() -> usize {
    events_offset() + capacity() * std::mem::size_of::<Event>()
}

fn attach(base: *mut u8, created: bool) {
    let shared = base as *mut Shared;
    // SAFETY: the segment is `size()` bytes; the creator initialises the header before any
    // backend exists; SHARED is set once per process.
    unsafe {
        if created {
            std::ptr::write_bytes(base, 0, events_offset()); // zero head, tail and counters
            (*shared).lock = shmem::lwlock(&SEGMENT);
            (*shared).capacity = capacity();
            let start_ms = u64::try_from(time::now() / 1000).unwrap_or(0);
            (*shared).next_id = AtomicU64::new(start_ms.saturating_mul(1000));
        }
        SHARED = shared;
    }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: set once per process at shmem startup; mutable fields are atomics or under the lock.
    unsafe { SHARED.as_ref() }
}

fn slot(shared: &Shared, index: u64) -> *mut Event {
    let base = shared as *const Shared as *mut u8;
    // SAFETY: `index % capacity` is within the events array laid out after the header.
    unsafe { base.add(events_offset()).cast::<Event>().add((index % shared.capacity as u64) as usize) }
}

/// A new elevation id (never 0).
pub fn next_id() -> u64 {
    shared().map_or(1, |s| s.next_id.fetch_add(1, Ordering::Relaxed) + 1)
}

/// Queues `event` for the worker; false (and counted) when the queue is full.
pub fn push(event: &Event) -> bool {
    let Some(s) = shared() else { return false };
    // SAFETY: the LWLock serializes producers and the consumer; the slot is within the segment.
    let queued = unsafe {
        pg_sys::LWLockAcquire(s.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let (head, tail) = (s.head.load(Ordering::Relaxed), s.tail.load(Ordering::Relaxed));
        let queued = tail - head < s.capacity as u64;
        if queued {
            slot(s, tail).write(*event);
            s.tail.store(tail + 1, Ordering::Release);
        }
        pg_sys::LWLockRelease(s.lock);
        queued
    };
    if !queued {
        s.dropped.fetch_add(1, Ordering::Relaxed);
    }
    queued
}

/// Takes up to `max` queued events, oldest first.
pub fn take(max: usize) -> Vec<Event> {
    let Some(s) = shared() else { return Vec::new() };
    // SAFETY: as in `push`.
    unsafe {
        pg_sys::LWLockAcquire(s.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let (head, tail) = (s.head.load(Ordering::Relaxed), s.tail.load(Ordering::Relaxed));
        let n = (tail - head).min(max as u64);
        let events = (0..n).map(|i| slot(s, head + i).read()).collect();
        s.head.store(head + n, Ordering::Release);
        pg_sys::LWLockRelease(s.lock);
        events
    }
}

/// A hint for the worker (which takes under the lock): nothing queued right now.
pub fn is_empty() -> bool {
    shared().is_none_or(|s| s.tail.load(Ordering::Acquire) == s.head.load(Ordering::Acquire))
}

/// Events lost to a full queue since the server started.
pub fn dropped() -> u64 {
    shared().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// Events the worker could not record (counted with the queue's own drops).
pub fn count_lost(n: u64) {
    if let Some(s) = shared() {
        s.dropped.fetch_add(n, Ordering::Relaxed);
    }
}
