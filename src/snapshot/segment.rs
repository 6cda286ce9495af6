//! Where the snapshot lives in shared memory: a header (lock, generation, counts) followed by
//! fixed-capacity arrays sized by the postmaster settings `pg_oncall.max_*`.

use std::mem::size_of;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::pg_sys;

use super::{FixedStr, IdentityEntry, IncidentEntry, Overflow, RoleEntry, ShiftEntry, Snapshot, View, ID_LEN};
use crate::guc;
use crate::pg::shmem;

/// Policy and schedule ids a gated role may list, on average (the pool is shared).
const IDS_PER_ROLE: usize = 16;

pub(super) const NAME: &std::ffi::CStr = c"pg_oncall snapshot";

#[derive(Clone, Copy)]
struct Capacity {
    shifts: usize,
    roles: usize,
    identities: usize,
    ids: usize,
    incidents: usize,
}

impl Capacity {
    fn from_gucs() -> Capacity {
        let roles = guc::MAX_GATED_ROLES.get() as usize;
        Capacity {
            shifts: guc::MAX_SHIFTS.get() as usize,
            roles,
            identities: guc::MAX_IDENTITIES.get() as usize,
            ids: roles * IDS_PER_ROLE,
            incidents: guc::MAX_INCIDENT_ASSIGNMENTS.get() as usize,
        }
    }
}

/// Byte offsets of the arrays that follow the header.
struct Layout {
    shift_keys: usize,
    shifts: usize,
    roles: usize,
    roles_by_oid: usize,
    identities: usize,
    ids: usize,
    incident_keys: usize,
    incidents: usize,
    total: usize,
}

const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl Layout {
    fn of(cap: Capacity) -> Layout {
        let shift_keys = align8(size_of::<Shared>());
        let shifts = align8(shift_keys + cap.shifts * size_of::<u64>());
        let roles = align8(shifts + cap.shifts * size_of::<ShiftEntry>());
        let roles_by_oid = align8(roles + cap.roles * size_of::<RoleEntry>());
        let identities = align8(roles_by_oid + cap.roles * size_of::<u32>());
        let ids = align8(identities + cap.identities * size_of::<IdentityEntry>());
        let incident_keys = align8(ids + cap.ids * size_of::<FixedStr<ID_LEN>>());
        let incidents = align8(incident_keys + cap.incidents * size_of::<u64>());
        let total = align8(incidents + cap.incidents * size_of::<IncidentEntry>());
        Layout { shift_keys, shifts, roles, roles_by_oid, identities, ids, incident_keys, incidents, total }
    }
}

/// The header. Fields after `lock` marked "under lock" are written only with the lock held
/// exclusively and read with it held shared.
pub(super) struct Shared {
    lock: *mut pg_sys::LWLock,
    capacity: Capacity,
    /// Bumped after each publish; 0 until the first one.
    pub(super) generation: AtomicU64,
    pub(super) overflowed: AtomicBool,
    // under lock
    n_shifts: usize,
    n_roles: usize,
    n_identities: usize,
    n_ids: usize,
    n_incidents: usize,
    last_sync_success: Option<i64>,
    incidents_last_success: Option<i64>,
}

static mut SHARED: *mut Shared = null_mut();

pub(super) fn size() -> usize {
    Layout::of(Capacity::from_gucs()).total
}

/// Finds (or, `created`, initialises empty) the segment at `base`.
pub(super) fn attach(base: *mut u8, created: bool) {
    let cap = Capacity::from_gucs();
    let shared = base as *mut Shared;
    if created {
        // SAFETY: we created the segment of `Layout::of(cap).total` bytes and nobody reads it
        // before shmem startup ends; zeroed, the counts are 0 and the generation "never".
        unsafe {
            std::ptr::write_bytes(base, 0, Layout::of(cap).total);
            (*shared).lock = shmem::lwlock(&super::SEGMENT);
            (*shared).capacity = cap;
            (*shared).last_sync_success = None;
            (*shared).incidents_last_success = None;
        }
    }
    // SAFETY: set once per process, before any reader; the segment lives as long as the cluster.
    unsafe { SHARED = shared };
}

pub(super) fn shared() -> Option<&'static Shared> {
    // SAFETY: SHARED is set once per process at shmem startup and never changes. Mutable
    // fields are atomics or read under the lock.
    unsafe { SHARED.as_ref() }
}

pub(super) fn check_capacity(snap: &Snapshot, shared: &Shared) -> Result<(), Overflow> {
    let cap = shared.capacity;
    let checks = [
        ("shifts", snap.shifts.len(), cap.shifts, "pg_oncall.max_shifts"),
        ("gated roles", snap.roles.len(), cap.roles, "pg_oncall.max_gated_roles"),
        ("identities", snap.identities.len(), cap.identities, "pg_oncall.max_identities"),
        ("policy and schedule ids of gated roles", snap.ids.len(), cap.ids, "pg_oncall.max_gated_roles"),
        ("incident assignments", snap.incidents.len(), cap.incidents, "pg_oncall.max_incident_assignments"),
    ];
    for (what, needed, capacity, setting) in checks {
        if needed > capacity {
            return Err(Overflow { what, needed, capacity, setting });
        }
    }
    Ok(())
}

pub(super) fn read<R>(read: impl FnOnce(&View) -> R) -> Option<R> {
    let shared = shared()?;
    if shared.generation.load(Ordering::Acquire) == 0 {
        return None;
    }
    // SAFETY: the lock pointer was set at segment creation; the arrays are within the segment
    // per `Layout` and hold `n_*` initialized entries, which only change under the exclusive lock.
    unsafe {
        pg_sys::LWLockAcquire(shared.lock, pg_sys::LWLockMode::LW_SHARED);
        let base = shared as *const Shared as *const u8;
        let layout = Layout::of(shared.capacity);
        let view = View {
            shift_keys: std::slice::from_raw_parts(base.add(layout.shift_keys).cast(), shared.n_shifts),
            shifts: std::slice::from_raw_parts(base.add(layout.shifts).cast(), shared.n_shifts),
            roles: std::slice::from_raw_parts(base.add(layout.roles).cast(), shared.n_roles),
            roles_by_oid: std::slice::from_raw_parts(base.add(layout.roles_by_oid).cast(), shared.n_roles),
            identities: std::slice::from_raw_parts(base.add(layout.identities).cast(), shared.n_identities),
            ids: std::slice::from_raw_parts(base.add(layout.ids).cast(), shared.n_ids),
            incident_keys: std::slice::from_raw_parts(base.add(layout.incident_keys).cast(), shared.n_incidents),
            incidents: std::slice::from_raw_parts(base.add(layout.incidents).cast(), shared.n_incidents),
            last_sync_success: shared.last_sync_success,
            incidents_last_success: shared.incidents_last_success,
        };
        let result = read(&view);
        pg_sys::LWLockRelease(shared.lock);
        Some(result)
    }
}

/// Copies `snap` (sorted, checked against the capacity) into the segment under the exclusive
/// lock and bumps the generation, which it returns.
pub(super) fn write(shared: &Shared, snap: &Snapshot) -> u64 {
    // SAFETY: the exclusive lock keeps readers out while the arrays and counts change together.
    unsafe {
        pg_sys::LWLockAcquire(shared.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        copy_in(shared, snap);
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        pg_sys::LWLockRelease(shared.lock);
        generation
    }
}

/// At shared-memory creation, before any backend exists: the copy from disk, as generation 1.
pub(super) fn write_before_backends(snap: &Snapshot) {
    let Some(shared) = shared() else { return };
    // SAFETY: no other process exists yet; we are the segment's creator.
    unsafe { copy_in(shared, snap) };
    shared.generation.store(1, Ordering::Release);
}

/// # Safety
/// The caller holds the lock exclusively or no other process exists, and `snap` fits.
unsafe fn copy_in(shared: &Shared, snap: &Snapshot) {
    let mut by_oid: Vec<u32> = (0..snap.roles.len() as u32).collect();
    by_oid.sort_by_key(|&i| snap.roles[i as usize].oid.to_u32());
    let keys: Vec<u64> = snap.shifts.iter().map(|s| super::email_key(s.email.text())).collect();
    let incident_keys: Vec<u64> = snap.incidents.iter().map(|i| super::email_key(i.email.text())).collect();
    // SAFETY: the caller checked the sizes against the capacity the segment was laid out for
    // and excludes readers; the arrays lie within the segment per `Layout`.
    unsafe {
        let shared_mut = shared as *const Shared as *mut Shared;
        let base = shared_mut as *mut u8;
        let layout = Layout::of(shared.capacity);
        std::ptr::copy_nonoverlapping(keys.as_ptr(), base.add(layout.shift_keys).cast(), keys.len());
        std::ptr::copy_nonoverlapping(snap.shifts.as_ptr(), base.add(layout.shifts).cast(), snap.shifts.len());
        std::ptr::copy_nonoverlapping(snap.roles.as_ptr(), base.add(layout.roles).cast(), snap.roles.len());
        std::ptr::copy_nonoverlapping(by_oid.as_ptr(), base.add(layout.roles_by_oid).cast(), by_oid.len());
        std::ptr::copy_nonoverlapping(snap.identities.as_ptr(), base.add(layout.identities).cast(), snap.identities.len());
        std::ptr::copy_nonoverlapping(snap.ids.as_ptr(), base.add(layout.ids).cast(), snap.ids.len());
        std::ptr::copy_nonoverlapping(incident_keys.as_ptr(), base.add(layout.incident_keys).cast(), incident_keys.len());
        std::ptr::copy_nonoverlapping(snap.incidents.as_ptr(), base.add(layout.incidents).cast(), snap.incidents.len());
        (*shared_mut).n_shifts = snap.shifts.len();
        (*shared_mut).n_roles = snap.roles.len();
        (*shared_mut).n_identities = snap.identities.len();
        (*shared_mut).n_ids = snap.ids.len();
        (*shared_mut).n_incidents = snap.incidents.len();
        (*shared_mut).last_sync_success = snap.last_sync_success;
        (*shared_mut).incidents_last_success = snap.incidents_last_success;
    }
}

/// What the published snapshot holds against the capacity the segment was laid out for
/// (zeros before the first publish), read under the shared lock.
pub(super) fn usage() -> Option<super::Usage> {
    let shared = shared()?;
    let cap = shared.capacity;
    // SAFETY: the lock pointer was set at segment creation; the counts change only under the
    // exclusive lock.
    let (shifts, roles, identities, ids) = unsafe {
        pg_sys::LWLockAcquire(shared.lock, pg_sys::LWLockMode::LW_SHARED);
        let counts = (shared.n_shifts, shared.n_roles, shared.n_identities, shared.n_ids);
        pg_sys::LWLockRelease(shared.lock);
        counts
    };
    Some(super::Usage {
        shifts: (shifts, cap.shifts),
        gated_roles: (roles, cap.roles),
        identities: (identities, cap.identities),
        ids: (ids, cap.ids),
    })
}
