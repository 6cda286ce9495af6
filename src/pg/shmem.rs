//! Shared-memory segments: each stage that keeps cluster-wide state declares a [`Segment`]
//! (its size, its LWLocks, how to initialise it) and `install` requests and creates them all
//! through PostgreSQL's shmem hooks, as pg_stat_statements does.

use std::ffi::CStr;

use pgrx::pg_sys;

pub struct Segment {
    /// Also the name of its LWLock tranche.
    pub name: &'static CStr,
    /// Bytes, from postmaster settings (read when shared memory is requested).
    pub size: fn() -> usize,
    pub lwlocks: i32,
    /// Called once per process with the segment's address; `created` is true only in the
    /// postmaster that created it, which must initialise it.
    pub attach: fn(base: *mut u8, created: bool),
}

static mut SEGMENTS: &[&Segment] = &[];
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// From `_PG_init`, in the postmaster.
pub fn install(segments: &'static [&'static Segment]) {
    // SAFETY: _PG_init runs once, single-threaded, in the postmaster before any backend
    // forks; the previous hooks are saved and chained.
    unsafe {
        SEGMENTS = segments;
        PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

/// The size and LWLocks of every segment, requested in the one phase PostgreSQL allows it.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in its shmem-request phase; SEGMENTS is set before.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
        for segment in SEGMENTS {
            pg_sys::RequestAddinShmemSpace((segment.size)());
            if segment.lwlocks > 0 {
                pg_sys::RequestNamedLWLockTranche(segment.name.as_ptr(), segment.lwlocks);
            }
        }
    }
}

/// Creates (in the postmaster) or finds (in an EXEC_BACKEND child) every segment.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: AddinShmemInitLock serializes segment creation as PostgreSQL requires; `found`
    // is false only for the creator, which initialises the segment before releasing the lock.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let init_lock = addin_shmem_init_lock();
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        for segment in SEGMENTS {
            let mut found = false;
            let base = pg_sys::ShmemInitStruct(segment.name.as_ptr(), (segment.size)(), &mut found) as *mut u8;
            (segment.attach)(base, !found);
        }
        pg_sys::LWLockRelease(init_lock);
    }
}

/// The first LWLock of a segment's tranche.
pub fn lwlock(segment: &Segment) -> *mut pg_sys::LWLock {
    // SAFETY: the tranche was requested in shmem_request; PostgreSQL returns its array.
    unsafe { &raw mut (*pg_sys::GetNamedLWLockTranche(segment.name.as_ptr())).lock }
}

unsafe extern "C" {
    /// `AddinShmemInitLock`, a macro bindgen cannot see (hooks.c); cannot raise.
    #[link_name = "pg_oncall_addin_shmem_init_lock"]
    fn addin_shmem_init_lock() -> *mut pg_sys::LWLock;
}

/// A bounded, NUL-free string stored inline; `len == u16::MAX` stands for SQL NULL.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    const NULL: FixedStr<N> = FixedStr { len: u16::MAX, bytes: [0; N] };

    /// `None` when the text does not fit.
    pub fn new(text: Option<&str>) -> Option<FixedStr<N>> {
        let Some(text) = text else { return Some(Self::NULL) };
        if text.len() > N {
            return None;
        }
        let mut out = FixedStr { len: text.len() as u16, bytes: [0; N] };
        out.bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(out)
    }

    /// The text cut to fit (on a character boundary); `None` is SQL NULL.
    pub fn truncated(text: Option<&str>) -> FixedStr<N> {
        let Some(text) = text else { return Self::NULL };
        let mut end = text.len().min(N);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self::new(Some(&text[..end])).unwrap_or(Self::NULL)
    }

    pub fn get(&self) -> Option<&str> {
        if self.len == u16::MAX {
            return None;
        }
        // SAFETY: built only by `new` from a &str, so the bytes are valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len as usize]) })
    }

    pub fn text(&self) -> &str {
        self.get().unwrap_or("")
    }
}
