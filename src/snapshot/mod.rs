//! The shared-memory snapshot every backend decides from: gated roles, identities and shifts,
//! published whole by the worker under one LWLock with a generation counter, and the
//! cluster-wide atomics beside it (worker wake-ups, refresh hand-shake, gate statistics).

use std::mem::size_of;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

use oncall_core::decision::{ShiftView, Source};
use pgrx::pg_sys;

use crate::guc;

mod file;

pub const NAME_LEN: usize = pg_sys::NAMEDATALEN as usize;
pub const EMAIL_LEN: usize = 256;
pub const ID_LEN: usize = 64;
/// Policy and schedule ids a gated role may list, on average (the pool is shared).
const IDS_PER_ROLE: usize = 16;
pub const ROUTES: [&str; 7] = ["set_role", "set_config", "function_set", "startup_option", "role_default", "statement", "login"];
pub const DECISIONS: [&str; 3] = ["allow", "deny", "audit_deny"];

/// A bounded, NUL-free string stored inline; `len == u16::MAX` stands for SQL NULL.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    len: u16,
    bytes: [u8; N],
}

impl<const N: usize> FixedStr<N> {
    const NULL: FixedStr<N> = FixedStr { len: u16::MAX, bytes: [0; N] };

    /// `None` when the text does not fit: the caller refuses the whole snapshot.
    pub fn new(text: Option<&str>) -> Option<FixedStr<N>> {
        let Some(text) = text else { return Some(Self::NULL) };
        if text.len() > N {
            return None;
        }
        let mut out = FixedStr { len: text.len() as u16, bytes: [0; N] };
        out.bytes[..text.len()].copy_from_slice(text.as_bytes());
        Some(out)
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

#[derive(Clone, Copy)]
pub struct ShiftEntry {
    pub email: FixedStr<EMAIL_LEN>,
    pub escalation_policy_id: FixedStr<ID_LEN>,
    pub schedule_id: FixedStr<ID_LEN>,
    pub escalation_level: Option<i32>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub source: Source,
}

impl ShiftEntry {
    pub fn view(&self) -> ShiftView<'_> {
        ShiftView {
            source: self.source,
            escalation_policy_id: self.escalation_policy_id.get(),
            schedule_id: self.schedule_id.get(),
            escalation_level: self.escalation_level,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// A slice of the shared id pool; `None` is SQL NULL ("any").
#[derive(Clone, Copy)]
pub struct IdRange {
    start: u32,
    len: u32,
}

#[derive(Clone, Copy)]
pub struct RoleEntry {
    pub name: FixedStr<NAME_LEN>,
    pub oid: pg_sys::Oid,
    pub escalation_policy_ids: Option<IdRange>,
    pub schedule_ids: Option<IdRange>,
    pub min_escalation_level: Option<i32>,
    pub max_escalation_level: Option<i32>,
    pub gate_login: bool,
}

#[derive(Clone, Copy)]
pub struct IdentityEntry {
    pub role_name: FixedStr<NAME_LEN>,
    pub email: FixedStr<EMAIL_LEN>,
}

/// What the worker read from the tables, ready to publish. Built in private memory so that a
/// snapshot that does not fit is refused whole and the published one stays in place.
#[derive(Default)]
pub struct Snapshot {
    roles: Vec<RoleEntry>,
    ids: Vec<FixedStr<ID_LEN>>,
    identities: Vec<IdentityEntry>,
    shifts: Vec<ShiftEntry>,
    pub last_sync_success: Option<i64>,
}

pub struct GatedRoleRow {
    pub name: String,
    pub oid: pg_sys::Oid,
    pub escalation_policy_ids: Option<Vec<String>>,
    pub schedule_ids: Option<Vec<String>>,
    pub min_escalation_level: Option<i32>,
    pub max_escalation_level: Option<i32>,
    pub gate_login: bool,
}

#[derive(Debug)]
pub struct TooLong(pub &'static str);

impl Snapshot {
    pub fn add_role(&mut self, row: GatedRoleRow) -> Result<(), TooLong> {
        let name = FixedStr::new(Some(&row.name)).ok_or(TooLong("role name"))?;
        let escalation_policy_ids = self.add_ids(row.escalation_policy_ids)?;
        let schedule_ids = self.add_ids(row.schedule_ids)?;
        self.roles.push(RoleEntry {
            name,
            oid: row.oid,
            escalation_policy_ids,
            schedule_ids,
            min_escalation_level: row.min_escalation_level,
            max_escalation_level: row.max_escalation_level,
            gate_login: row.gate_login,
        });
        Ok(())
    }

    fn add_ids(&mut self, ids: Option<Vec<String>>) -> Result<Option<IdRange>, TooLong> {
        let Some(ids) = ids else { return Ok(None) };
        let start = self.ids.len() as u32;
        for id in &ids {
            self.ids.push(FixedStr::new(Some(id)).ok_or(TooLong("escalation policy or schedule id"))?);
        }
        Ok(Some(IdRange { start, len: ids.len() as u32 }))
    }

    pub fn add_identity(&mut self, role_name: &str, email: &str) -> Result<(), TooLong> {
        self.identities.push(IdentityEntry {
            role_name: FixedStr::new(Some(role_name)).ok_or(TooLong("role name"))?,
            email: FixedStr::new(Some(email)).ok_or(TooLong("email"))?,
        });
        Ok(())
    }

    pub fn add_shift(&mut self, shift: ShiftEntry) {
        self.shifts.push(shift);
    }

    pub fn counts(&self) -> (usize, usize, usize) {
        (self.roles.len(), self.identities.len(), self.shifts.len())
    }
}

#[derive(Clone, Copy)]
struct Capacity {
    shifts: usize,
    roles: usize,
    identities: usize,
    ids: usize,
}

impl Capacity {
    fn from_gucs() -> Capacity {
        let roles = guc::MAX_GATED_ROLES.get() as usize;
        Capacity {
            shifts: guc::MAX_SHIFTS.get() as usize,
            roles,
            identities: guc::MAX_IDENTITIES.get() as usize,
            ids: roles * IDS_PER_ROLE,
        }
    }
}

/// Byte offsets of the arrays that follow the header in the shared segment.
struct Layout {
    shift_keys: usize,
    shifts: usize,
    roles: usize,
    roles_by_oid: usize,
    identities: usize,
    ids: usize,
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
        let total = align8(ids + cap.ids * size_of::<FixedStr<ID_LEN>>());
        Layout { shift_keys, shifts, roles, roles_by_oid, identities, ids, total }
    }
}

/// The header of the shared segment. Fields after `lock` marked "under lock" are written only
/// with the lock held exclusively and read with it held shared.
struct Shared {
    lock: *mut pg_sys::LWLock,
    capacity: Capacity,
    /// Bumped after each publish; 0 until the first one. Lets backends trust their caches
    /// without taking the lock.
    generation: AtomicU64,
    // under lock
    n_shifts: usize,
    n_roles: usize,
    n_identities: usize,
    n_ids: usize,
    last_sync_success: Option<i64>,
    // worker hand-shake
    worker_latch: AtomicPtr<pg_sys::Latch>,
    worker_pid: AtomicI32,
    reload_requests: AtomicU64,
    sync_requests: AtomicU64,
    sync_served: AtomicU64,
    sync_served_ok: AtomicBool,
    /// The last load was refused for want of capacity (the previous snapshot is in force).
    overflowed: AtomicBool,
    stats: [AtomicU64; ROUTES.len() * DECISIONS.len()],
}

static mut SHARED: *mut Shared = null_mut();
static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;
const SEGMENT_NAME: &std::ffi::CStr = c"pg_oncall snapshot";
const TRANCHE_NAME: &std::ffi::CStr = c"pg_oncall";

/// Called from `_PG_init` in the postmaster.
pub fn install_hooks() {
    // SAFETY: _PG_init runs once, single-threaded, in the postmaster before any backend forks;
    // we save the previous hooks and chain to them, as pg_stat_statements does.
    unsafe {
        PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(shmem_request);
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(shmem_startup);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_request() {
    // SAFETY: called by the postmaster in its shmem-request phase, the only time these
    // requests are allowed; the previous hook is chained first.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(Layout::of(Capacity::from_gucs()).total);
        pg_sys::RequestNamedLWLockTranche(TRANCHE_NAME.as_ptr(), 1);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn shmem_startup() {
    // SAFETY: called once in the postmaster (and never concurrently) after shared memory is
    // created; AddinShmemInitLock serializes segment creation as PostgreSQL requires, and the
    // segment is zeroed below before anyone can read it (`found` is false only for its creator).
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            prev();
        }
        let cap = Capacity::from_gucs();
        let layout = Layout::of(cap);
        let init_lock = addin_shmem_init_lock();
        pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(SEGMENT_NAME.as_ptr(), layout.total, &mut found) as *mut Shared;
        if !found {
            std::ptr::write_bytes(shared as *mut u8, 0, layout.total);
            (*shared).lock = &raw mut (*pg_sys::GetNamedLWLockTranche(TRANCHE_NAME.as_ptr())).lock;
            (*shared).capacity = cap;
            (*shared).last_sync_success = None;
            restore_from_disk(&*shared);
        }
        SHARED = shared;
        pg_sys::LWLockRelease(init_lock);
    }
}

/// PostgreSQL 15's `AddinShmemInitLock` macro (lwlocknames.h), which bindgen cannot see.
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    const ADDIN_SHMEM_INIT_LOCK: usize = 21;
    // SAFETY: MainLWLockArray is set up before any shmem_startup_hook runs.
    unsafe { &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock }
}

fn shared() -> Option<&'static Shared> {
    // SAFETY: SHARED is set once in the postmaster before forking and never changes; the
    // segment lives as long as the cluster. Mutable fields are atomics or read under the lock.
    unsafe { SHARED.as_ref() }
}

/// Cheap: one atomic load. 0 means "never published" (or the library is not preloaded).
#[inline]
pub fn generation() -> u64 {
    shared().map_or(0, |s| s.generation.load(Ordering::Acquire))
}

/// A consistent, read-only view of the published snapshot, valid while the shared lock is held.
pub struct View<'a> {
    /// `email_key` of each shift, in the same order: the lookup searches this compact array
    /// (80 KB for 10,000 shifts) and touches the 400-byte entries only for the answer.
    shift_keys: &'a [u64],
    shifts: &'a [ShiftEntry],
    roles: &'a [RoleEntry],
    roles_by_oid: &'a [u32],
    identities: &'a [IdentityEntry],
    ids: &'a [FixedStr<ID_LEN>],
    pub last_sync_success: Option<i64>,
}

impl<'a> View<'a> {
    /// A role is gated if its OID is (so a rename keeps it gated) or its name is (so a role
    /// dropped and re-created under the same name is gated before the next reload).
    pub fn gated_role(&self, oid: pg_sys::Oid, name: &str) -> Option<&'a RoleEntry> {
        let by_oid = self
            .roles_by_oid
            .binary_search_by(|&i| self.roles[i as usize].oid.to_u32().cmp(&oid.to_u32()))
            .ok()
            .map(|i| &self.roles[self.roles_by_oid[i] as usize]);
        by_oid.or_else(|| self.gated_role_by_name(name))
    }

    pub fn gated_role_by_name(&self, name: &str) -> Option<&'a RoleEntry> {
        self.roles
            .binary_search_by(|r| r.name.text().cmp(name))
            .ok()
            .map(|i| &self.roles[i])
    }

    pub fn roles(&self) -> &'a [RoleEntry] {
        self.roles
    }

    pub fn ids(&self, range: Option<IdRange>) -> Option<&'a [FixedStr<ID_LEN>]> {
        range.map(|r| &self.ids[r.start as usize..(r.start + r.len) as usize])
    }

    pub fn identity_email(&self, role_name: &str) -> Option<&'a str> {
        self.identities
            .binary_search_by(|i| i.role_name.text().cmp(role_name))
            .ok()
            .map(|i| self.identities[i].email.text())
    }

    /// The shifts of one (normalized) email: shifts are sorted by email.
    pub fn shifts_of(&self, email: &str) -> &'a [ShiftEntry] {
        let key = email_key(email);
        let start = self.shift_keys.partition_point(|&k| k < key);
        let same_key = &self.shifts[start..start + self.shift_keys[start..].partition_point(|&k| k == key)];
        // Within one key, shifts are sorted by email: skip any other email sharing the hash.
        let first = same_key.partition_point(|s| s.email.text() < email);
        let len = same_key[first..].partition_point(|s| s.email.text() == email);
        &same_key[first..first + len]
    }
}

impl AsRef<str> for FixedStr<ID_LEN> {
    fn as_ref(&self) -> &str {
        self.text()
    }
}

/// Runs `read` on the published snapshot under the shared lock; `None` if there is none yet.
/// `read` must not raise a PostgreSQL error (copy out, then report).
pub fn read<R>(read: impl FnOnce(&View) -> R) -> Option<R> {
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
            last_sync_success: shared.last_sync_success,
        };
        let result = read(&view);
        pg_sys::LWLockRelease(shared.lock);
        Some(result)
    }
}

#[derive(Debug)]
pub struct Overflow {
    pub what: &'static str,
    pub needed: usize,
    pub capacity: usize,
    pub setting: &'static str,
}

fn check_capacity(snap: &Snapshot, cap: Capacity) -> Result<(), Overflow> {
    let checks = [
        ("shifts", snap.shifts.len(), cap.shifts, "pg_oncall.max_shifts"),
        ("gated roles", snap.roles.len(), cap.roles, "pg_oncall.max_gated_roles"),
        ("identities", snap.identities.len(), cap.identities, "pg_oncall.max_identities"),
        ("policy and schedule ids of gated roles", snap.ids.len(), cap.ids, "pg_oncall.max_gated_roles"),
    ];
    for (what, needed, capacity, setting) in checks {
        if needed > capacity {
            return Err(Overflow { what, needed, capacity, setting });
        }
    }
    Ok(())
}

/// FNV-1a: cheap, stable across processes; keys shifts and checks the on-disk copy.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The order and search key of shifts, from a normalized email.
fn email_key(email: &str) -> u64 {
    fnv1a(email.as_bytes())
}

/// Sorts for lookups (and so that equal contents encode equally).
fn sort(snap: &mut Snapshot) {
    snap.shifts.sort_by_cached_key(|s| (email_key(s.email.text()), s.email.text().to_owned(), s.starts_at));
    snap.roles.sort_by(|a, b| a.name.text().cmp(b.name.text()));
    snap.identities.sort_by(|a, b| a.role_name.text().cmp(b.role_name.text()));
}

thread_local! {
    /// (generation, content) of this process's last publish: an unchanged reload (a standby
    /// polls every second) then costs no generation bump, so no backend loses its cache.
    static LAST_PUBLISHED: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Copies `snap` (sorted) into the segment. The caller holds the lock
/// exclusively, or is the postmaster before any backend exists.
unsafe fn write_segment(shared: &Shared, snap: &Snapshot) {
    let mut by_oid: Vec<u32> = (0..snap.roles.len() as u32).collect();
    by_oid.sort_by_key(|&i| snap.roles[i as usize].oid.to_u32());
    // SAFETY: the caller checked the sizes against the capacity the segment was laid out for
    // and excludes readers; the arrays lie within the segment per `Layout`.
    unsafe {
        let shared_mut = shared as *const Shared as *mut Shared;
        let base = shared_mut as *mut u8;
        let layout = Layout::of(shared.capacity);
        let keys: Vec<u64> = snap.shifts.iter().map(|s| email_key(s.email.text())).collect();
        std::ptr::copy_nonoverlapping(keys.as_ptr(), base.add(layout.shift_keys).cast(), keys.len());
        std::ptr::copy_nonoverlapping(snap.shifts.as_ptr(), base.add(layout.shifts).cast(), snap.shifts.len());
        std::ptr::copy_nonoverlapping(snap.roles.as_ptr(), base.add(layout.roles).cast(), snap.roles.len());
        std::ptr::copy_nonoverlapping(by_oid.as_ptr(), base.add(layout.roles_by_oid).cast(), by_oid.len());
        std::ptr::copy_nonoverlapping(snap.identities.as_ptr(), base.add(layout.identities).cast(), snap.identities.len());
        std::ptr::copy_nonoverlapping(snap.ids.as_ptr(), base.add(layout.ids).cast(), snap.ids.len());
        (*shared_mut).n_shifts = snap.shifts.len();
        (*shared_mut).n_roles = snap.roles.len();
        (*shared_mut).n_identities = snap.identities.len();
        (*shared_mut).n_ids = snap.ids.len();
        (*shared_mut).last_sync_success = snap.last_sync_success;
    }
}

/// Publishes `snap` whole, or refuses it whole when it exceeds the capacity, then keeps a
/// copy on disk so that the next server start enforces it before the worker's first load.
pub fn publish(mut snap: Snapshot) -> Result<u64, Overflow> {
    let shared = shared().ok_or(Overflow { what: "shared memory", needed: 1, capacity: 0, setting: "shared_preload_libraries" })?;
    if let Err(overflow) = check_capacity(&snap, shared.capacity) {
        shared.overflowed.store(true, Ordering::Relaxed);
        return Err(overflow);
    }
    shared.overflowed.store(false, Ordering::Relaxed);
    sort(&mut snap);
    let encoded = file::encode(&snap);
    let content = file::checksum(&encoded);
    let current = shared.generation.load(Ordering::Acquire);
    if LAST_PUBLISHED.get() == Some((current, content)) {
        return Ok(current);
    }
    // SAFETY: the exclusive lock keeps readers out while the arrays and counts change together.
    let generation = unsafe {
        pg_sys::LWLockAcquire(shared.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        write_segment(shared, &snap);
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        pg_sys::LWLockRelease(shared.lock);
        generation
    };
    LAST_PUBLISHED.set(Some((generation, content)));
    if let Err(e) = file::save(&encoded) {
        pgrx::warning!("pg_oncall: could not save the snapshot to {}: {e}", file::PATH);
    }
    Ok(generation)
}

/// The extension is gone: nothing is gated any more, now or after a restart.
pub fn clear() {
    let _ = publish(Snapshot::default());
    file::remove();
}

/// In the postmaster at shared-memory creation: enforce the last published snapshot from
/// the first connection on, until the worker loads the tables.
fn restore_from_disk(shared: &Shared) {
    let mut snap = match file::load() {
        Ok(Some(snap)) => snap,
        Ok(None) => return,
        Err(e) => {
            pgrx::log!("pg_oncall: ignoring {}: {e}", file::PATH);
            return;
        }
    };
    if let Err(o) = check_capacity(&snap, shared.capacity) {
        pgrx::log!("pg_oncall: ignoring {}: {} {} exceed {} ({})", file::PATH, o.needed, o.what, o.capacity, o.setting);
        return;
    }
    sort(&mut snap);
    // SAFETY: no backend exists yet; we are the segment's creator.
    unsafe { write_segment(shared, &snap) };
    shared.generation.store(1, Ordering::Release);
}

// ------------------------------------------------------------------ worker hand-shake

/// The worker announces itself so that backends can wake it.
pub fn register_worker(latch: *mut pg_sys::Latch, pid: i32) {
    if let Some(s) = shared() {
        s.worker_latch.store(latch, Ordering::Release);
        s.worker_pid.store(pid, Ordering::Release);
    }
}

pub fn worker_pid() -> Option<i32> {
    shared().map(|s| s.worker_pid.load(Ordering::Acquire)).filter(|&p| p != 0)
}

fn wake_worker(s: &Shared) {
    let latch = s.worker_latch.load(Ordering::Acquire);
    if !latch.is_null() {
        // SAFETY: the latch is the worker's PGPROC latch, in shared memory for the cluster's
        // lifetime; SetLatch on another process's latch is what it is for.
        unsafe { pg_sys::SetLatch(latch) };
    }
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
pub fn at_commit(action: CommitAction) {
    AT_COMMIT.set(AT_COMMIT.get().max(action));
    if !XACT_CALLBACK_REGISTERED.replace(true) {
        // SAFETY: registers a process-lifetime callback once per backend.
        unsafe { pg_sys::RegisterXactCallback(Some(on_xact_end), std::ptr::null_mut()) };
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
                clear();
                request_reload();
            }
        },
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => AT_COMMIT.set(CommitAction::None),
        _ => {}
    }
}

/// Asks the worker to reload the snapshot from the tables (after a committed change).
pub fn request_reload() {
    if let Some(s) = shared() {
        s.reload_requests.fetch_add(1, Ordering::AcqRel);
        wake_worker(s);
    }
}

pub fn reload_requests() -> u64 {
    shared().map_or(0, |s| s.reload_requests.load(Ordering::Acquire))
}

/// Asks the worker to sync now; returns the ticket to wait for.
pub fn request_sync() -> Option<u64> {
    let s = shared()?;
    let ticket = s.sync_requests.fetch_add(1, Ordering::AcqRel) + 1;
    wake_worker(s);
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

pub fn overflowed() -> bool {
    shared().is_some_and(|s| s.overflowed.load(Ordering::Relaxed))
}


pub fn count_decision(route: usize, decision: usize) {
    if let Some(s) = shared() {
        s.stats[route * DECISIONS.len() + decision].fetch_add(1, Ordering::Relaxed);
    }
}

pub fn decision_counts() -> Vec<(&'static str, &'static str, u64)> {
    let Some(s) = shared() else { return Vec::new() };
    let mut out = Vec::with_capacity(s.stats.len());
    for (r, route) in ROUTES.iter().enumerate() {
        for (d, decision) in DECISIONS.iter().enumerate() {
            out.push((*route, *decision, s.stats[r * DECISIONS.len() + d].load(Ordering::Relaxed)));
        }
    }
    out
}
