//! The on-disk copy of the last published snapshot (`$PGDATA/pg_oncall.snapshot`), written by
//! the worker after each publish and read by the postmaster at start, so that gated roles are
//! enforced before the worker's first load. Field by field, versioned and checksummed.

use std::io::Write;

use oncall_core::decision::Source;
use pgrx::pg_sys;

use super::{FixedStr, IdRange, IdentityEntry, IncidentEntry, RoleEntry, ShiftEntry, Snapshot};

/// Relative to the data directory, the server's working directory.
pub const PATH: &str = "pg_oncall.snapshot";
/// The format written; `PGONCAL1` (0.1.0, before rules had elevation limits and before
/// incidents) is still read, so that a server upgraded to this library enforces its last
/// snapshot from the first start.
const MAGIC: &[u8; 8] = b"PGONCAL2";
const MAGIC_V1: &[u8; 8] = b"PGONCAL1";

struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn opt_i64(&mut self, v: Option<i64>) {
        self.0.push(v.is_some() as u8);
        self.i64(v.unwrap_or(0));
    }
    fn opt_i32(&mut self, v: Option<i32>) {
        self.opt_i64(v.map(i64::from));
    }
    fn str<const N: usize>(&mut self, s: &FixedStr<N>) {
        match s.get() {
            None => self.u32(u32::MAX),
            Some(text) => {
                self.u32(text.len() as u32);
                self.0.extend_from_slice(text.as_bytes());
            }
        }
    }
    fn range(&mut self, r: Option<IdRange>) {
        self.0.push(r.is_some() as u8);
        let r = r.unwrap_or(IdRange { start: 0, len: 0 });
        self.u32(r.start);
        self.u32(r.len);
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn opt_i64(&mut self) -> Result<Option<i64>, String> {
        let present = self.u8()? != 0;
        let v = self.i64()?;
        Ok(present.then_some(v))
    }
    fn opt_i32(&mut self) -> Result<Option<i32>, String> {
        self.opt_i64()?.map(|v| i32::try_from(v).map_err(|_| "level out of range".to_string())).transpose()
    }
    fn str<const N: usize>(&mut self) -> Result<FixedStr<N>, String> {
        let len = self.u32()?;
        if len == u32::MAX {
            return FixedStr::new(None).ok_or_else(|| "bad null".into());
        }
        let bytes = self.take(len as usize)?;
        let text = std::str::from_utf8(bytes).map_err(|_| "invalid UTF-8".to_string())?;
        FixedStr::new(Some(text)).ok_or_else(|| "string too long".into())
    }
    fn range(&mut self, pool_len: usize) -> Result<Option<IdRange>, String> {
        let present = self.u8()? != 0;
        let (start, len) = (self.u32()?, self.u32()?);
        if present && start as usize + len as usize > pool_len {
            return Err("id range out of bounds".into());
        }
        Ok(present.then_some(IdRange { start, len }))
    }
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u32()? as usize;
        // Every entry takes at least one byte: a count larger than the rest is corrupt.
        if n > self.0.len() {
            return Err("count exceeds the file".into());
        }
        Ok(n)
    }
}

/// Detects a torn or edited file, not an attacker (the file is the server's own).
pub fn checksum(bytes: &[u8]) -> u64 {
    super::fnv1a(bytes)
}

pub fn encode(snap: &Snapshot) -> Vec<u8> {
    let mut w = Writer(MAGIC.to_vec());
    w.opt_i64(snap.last_sync_success);
    w.u32(snap.ids.len() as u32);
    for id in &snap.ids {
        w.str(id);
    }
    w.u32(snap.roles.len() as u32);
    for r in &snap.roles {
        w.str(&r.name);
        w.u32(r.oid.to_u32());
        w.range(r.escalation_policy_ids);
        w.range(r.schedule_ids);
        w.opt_i32(r.min_escalation_level);
        w.opt_i32(r.max_escalation_level);
        w.0.push(r.gate_login as u8);
        w.0.push(r.require_reason as u8);
        w.opt_i64(r.max_duration);
        w.0.push(r.require_incident as u8);
    }
    w.u32(snap.identities.len() as u32);
    for i in &snap.identities {
        w.str(&i.role_name);
        w.str(&i.email);
    }
    w.u32(snap.shifts.len() as u32);
    for s in &snap.shifts {
        w.str(&s.email);
        w.str(&s.escalation_policy_id);
        w.str(&s.schedule_id);
        w.opt_i32(s.escalation_level);
        w.opt_i64(s.starts_at);
        w.opt_i64(s.ends_at);
        w.0.push(matches!(s.source, Source::Manual) as u8);
    }
    w.opt_i64(snap.incidents_last_success);
    w.u32(snap.incidents.len() as u32);
    for i in &snap.incidents {
        w.str(&i.email);
        w.str(&i.id);
        w.str(&i.escalation_policy_id);
    }
    let sum = checksum(&w.0);
    w.0.extend_from_slice(&sum.to_le_bytes());
    w.0
}

fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < MAGIC.len() + 8 {
        return Err("not a pg_oncall snapshot".into());
    }
    let v1 = match &bytes[..MAGIC.len()] {
        m if m == MAGIC => false,
        m if m == MAGIC_V1 => true,
        _ => return Err("not a pg_oncall snapshot of a known version".into()),
    };
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body) != u64::from_le_bytes(sum.try_into().unwrap_or_default()) {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let mut snap = Snapshot { last_sync_success: r.opt_i64()?, ..Snapshot::default() };
    for _ in 0..r.count()? {
        snap.ids.push(r.str()?);
    }
    for _ in 0..r.count()? {
        snap.roles.push(RoleEntry {
            name: r.str()?,
            oid: pg_sys::Oid::from(r.u32()?),
            escalation_policy_ids: r.range(snap.ids.len())?,
            schedule_ids: r.range(snap.ids.len())?,
            min_escalation_level: r.opt_i32()?,
            max_escalation_level: r.opt_i32()?,
            gate_login: r.u8()? != 0,
            require_reason: !v1 && r.u8()? != 0,
            max_duration: if v1 { None } else { r.opt_i64()? },
            require_incident: !v1 && r.u8()? != 0,
        });
    }
    for _ in 0..r.count()? {
        snap.identities.push(IdentityEntry { role_name: r.str()?, email: r.str()? });
    }
    for _ in 0..r.count()? {
        snap.shifts.push(ShiftEntry {
            email: r.str()?,
            escalation_policy_id: r.str()?,
            schedule_id: r.str()?,
            escalation_level: r.opt_i32()?,
            starts_at: r.opt_i64()?,
            ends_at: r.opt_i64()?,
            source: if r.u8()? != 0 { Source::Manual } else { Source::PagerDuty },
        });
    }
    if !v1 {
        snap.incidents_last_success = r.opt_i64()?;
        for _ in 0..r.count()? {
            snap.incidents.push(IncidentEntry { email: r.str()?, id: r.str()?, escalation_policy_id: r.str()? });
        }
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(snap)
}

/// Writes `encode`'s output atomically: a temporary file, fsync, rename.
pub fn save(encoded: &[u8]) -> std::io::Result<()> {
    let tmp = format!("{PATH}.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(encoded)?;
    file.sync_all()?;
    std::fs::rename(&tmp, PATH)
}

/// `Ok(None)` when there is no file (a new cluster, or the extension never loaded).
pub fn load() -> Result<Option<Snapshot>, String> {
    match std::fs::read(PATH) {
        Ok(bytes) => decode(&bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Removes the copy, when the extension itself is gone.
pub fn remove() {
    let _ = std::fs::remove_file(PATH);
}
