//! The shared-memory snapshot every backend decides from: gated roles, identities, shifts and
//! open incidents' assignments, published whole by the worker under one LWLock, with a generation counter that lets
//! backends trust their caches without taking the lock. `load` fills it from the tables or
//! from its on-disk copy (`file`); `segment` lays it out in shared memory.

use std::sync::atomic::Ordering;

use oncall_core::decision::{IncidentView, ShiftView, Source};
use pgrx::pg_sys;

mod file;
pub mod load;
mod segment;

pub use crate::pg::shmem::FixedStr;
use crate::pg::shmem::Segment;

pub static SEGMENT: Segment = Segment { name: segment::NAME, size: segment::size, lwlocks: 1, attach };

/// The segment exists: a new one enforces the on-disk copy from the first connection on.
fn attach(base: *mut u8, created: bool) {
    segment::attach(base, created);
    if created {
        load::from_disk();
    }
}

pub const NAME_LEN: usize = pg_sys::NAMEDATALEN as usize;
pub const EMAIL_LEN: usize = 256;
pub const ID_LEN: usize = 64;

impl AsRef<str> for FixedStr<ID_LEN> {
    fn as_ref(&self) -> &str {
        self.text()
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

/// One assignee of one open incident (an incident with two assignees is two entries).
#[derive(Clone, Copy)]
pub struct IncidentEntry {
    /// The assignee's normalized email.
    pub email: FixedStr<EMAIL_LEN>,
    pub id: FixedStr<ID_LEN>,
    pub escalation_policy_id: FixedStr<ID_LEN>,
}

impl IncidentEntry {
    pub fn view(&self) -> IncidentView<'_> {
        IncidentView { id: self.id.text(), escalation_policy_id: self.escalation_policy_id.get() }
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
    /// A switch needs `pg_oncall.reason`.
    pub require_reason: bool,
    /// An elevation ends after this long (µs), even while still on call.
    pub max_duration: Option<i64>,
    /// On call is not enough: also assigned to an open incident.
    pub require_incident: bool,
}

#[derive(Clone, Copy)]
pub struct IdentityEntry {
    pub role_name: FixedStr<NAME_LEN>,
    pub email: FixedStr<EMAIL_LEN>,
}

/// A snapshot being built in private memory, so that one that does not fit is refused whole
/// and the published one stays in place.
#[derive(Default)]
pub struct Snapshot {
    roles: Vec<RoleEntry>,
    ids: Vec<FixedStr<ID_LEN>>,
    identities: Vec<IdentityEntry>,
    shifts: Vec<ShiftEntry>,
    incidents: Vec<IncidentEntry>,
    pub last_sync_success: Option<i64>,
    /// The last successful incident sync; `None`: never (incidents grant nothing).
    pub incidents_last_success: Option<i64>,
}

pub struct GatedRoleRow {
    pub name: String,
    pub oid: pg_sys::Oid,
    pub escalation_policy_ids: Option<Vec<String>>,
    pub schedule_ids: Option<Vec<String>>,
    pub min_escalation_level: Option<i32>,
    pub max_escalation_level: Option<i32>,
    pub gate_login: bool,
    pub require_reason: bool,
    pub max_duration: Option<i64>,
    pub require_incident: bool,
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
            require_reason: row.require_reason,
            max_duration: row.max_duration,
            require_incident: row.require_incident,
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

    /// One entry per assignee; `Err` names the field that does not fit.
    pub fn add_incident(&mut self, email: &str, id: &str, escalation_policy_id: Option<&str>) -> Result<(), TooLong> {
        self.incidents.push(IncidentEntry {
            email: FixedStr::new(Some(email)).ok_or(TooLong("assignee email"))?,
            id: FixedStr::new(Some(id)).ok_or(TooLong("id"))?,
            escalation_policy_id: FixedStr::new(escalation_policy_id).ok_or(TooLong("escalation_policy_id"))?,
        });
        Ok(())
    }

    /// Gated roles, identities, shifts, incident assignments.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (self.roles.len(), self.identities.len(), self.shifts.len(), self.incidents.len())
    }

    /// Sorts for lookups (and so that equal contents encode equally).
    fn sort(&mut self) {
        self.shifts.sort_by_cached_key(|s| (email_key(s.email.text()), s.email.text().to_owned(), s.starts_at));
        self.incidents.sort_by_cached_key(|i| (email_key(i.email.text()), i.email.text().to_owned(), i.id.text().to_owned()));
        self.roles.sort_by(|a, b| a.name.text().cmp(b.name.text()));
        self.identities.sort_by(|a, b| a.role_name.text().cmp(b.role_name.text()));
    }
}

/// FNV-1a: cheap, stable across processes; keys shifts and checks the on-disk copy.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The order and search key of shifts, from a normalized email.
fn email_key(email: &str) -> u64 {
    fnv1a(email.as_bytes())
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
    /// `email_key` of each incident assignment, in the same order (as for shifts).
    incident_keys: &'a [u64],
    incidents: &'a [IncidentEntry],
    pub last_sync_success: Option<i64>,
    pub incidents_last_success: Option<i64>,
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
        self.roles.binary_search_by(|r| r.name.text().cmp(name)).ok().map(|i| &self.roles[i])
    }

    pub fn roles(&self) -> &'a [RoleEntry] {
        self.roles
    }

    pub fn ids(&self, range: Option<IdRange>) -> Option<&'a [FixedStr<ID_LEN>]> {
        range.map(|r| &self.ids[r.start as usize..(r.start + r.len) as usize])
    }

    pub fn identity_email(&self, role_name: &str) -> Option<&'a str> {
        self.identities.binary_search_by(|i| i.role_name.text().cmp(role_name)).ok().map(|i| self.identities[i].email.text())
    }

    /// The shifts of one (normalized) email: shifts are sorted by email.
    pub fn shifts_of(&self, email: &str) -> &'a [ShiftEntry] {
        of_email(self.shift_keys, self.shifts, email, |s| s.email.text())
    }

    /// The open incidents one (normalized) email is assigned to.
    pub fn incidents_of(&self, email: &str) -> &'a [IncidentEntry] {
        of_email(self.incident_keys, self.incidents, email, |i| i.email.text())
    }
}

/// The entries of `email` among `entries`, sorted by (`email_key`, email) with `keys` their keys.
fn of_email<'a, T>(keys: &[u64], entries: &'a [T], email: &str, email_of: impl Fn(&T) -> &str) -> &'a [T] {
    let key = email_key(email);
    let start = keys.partition_point(|&k| k < key);
    let same_key = &entries[start..start + keys[start..].partition_point(|&k| k == key)];
    // Within one key, entries are sorted by email: skip any other email sharing the hash.
    let first = same_key.partition_point(|e| email_of(e) < email);
    let len = same_key[first..].partition_point(|e| email_of(e) == email);
    &same_key[first..first + len]
}

/// Runs `read` on the published snapshot under the shared lock; `None` if there is none yet.
/// `read` must not raise a PostgreSQL error (copy out, then report).
pub fn read<R>(read: impl FnOnce(&View) -> R) -> Option<R> {
    segment::read(read)
}

/// Whether syncs fetch the open incidents: per `pg_oncall.sync_incidents`, which in `auto`
/// depends on whether a published rule has `require_incident`.
pub fn incidents_wanted() -> bool {
    let a_rule_requires_them = read(|view| view.roles().iter().any(|r| r.require_incident)).unwrap_or(false);
    crate::guc::incidents_wanted(a_rule_requires_them)
}

/// Cheap: one atomic load. 0 means "never published" (or the library is not preloaded).
#[inline]
pub fn generation() -> u64 {
    segment::shared().map_or(0, |s| s.generation.load(Ordering::Acquire))
}

#[derive(Debug)]
pub struct Overflow {
    pub what: &'static str,
    pub needed: usize,
    pub capacity: usize,
    pub setting: &'static str,
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the snapshot does not fit: {} {} > capacity {} (raise {} and restart)",
            self.needed, self.what, self.capacity, self.setting
        )
    }
}

thread_local! {
    /// (generation, content) of this process's last publish: an unchanged reload (a standby
    /// polls every second) then costs no generation bump, so no backend loses its cache.
    static LAST_PUBLISHED: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Publishes `snap` whole, or refuses it whole when it exceeds the capacity, then keeps a
/// copy on disk so that the next server start enforces it before the worker's first load.
pub fn publish(mut snap: Snapshot) -> Result<u64, Overflow> {
    let shared = segment::shared().ok_or(Overflow {
        what: "shared memory",
        needed: 1,
        capacity: 0,
        setting: "shared_preload_libraries",
    })?;
    if let Err(overflow) = segment::check_capacity(&snap, shared) {
        shared.overflowed.store(true, Ordering::Relaxed);
        return Err(overflow);
    }
    shared.overflowed.store(false, Ordering::Relaxed);
    snap.sort();
    let encoded = file::encode(&snap);
    let content = file::checksum(&encoded);
    let current = shared.generation.load(Ordering::Acquire);
    if LAST_PUBLISHED.get() == Some((current, content)) {
        return Ok(current);
    }
    let generation = segment::write(shared, &snap);
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

/// The last load was refused for want of capacity (the previous snapshot is in force).
pub fn overflowed() -> bool {
    segment::shared().is_some_and(|s| s.overflowed.load(Ordering::Relaxed))
}

/// (entries in the published snapshot, capacity) per array of the segment, for monitoring
/// (`oncall.pg_stat_oncall_sync`): a load past a capacity is refused whole.
pub struct Usage {
    pub shifts: (usize, usize),
    pub gated_roles: (usize, usize),
    pub identities: (usize, usize),
    /// Escalation policy and schedule ids of gated roles (a pool sized by max_gated_roles).
    pub ids: (usize, usize),
}

/// `None` when the library is not preloaded (no segment).
pub fn usage() -> Option<Usage> {
    segment::usage()
}
