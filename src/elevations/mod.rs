//! Elevation records: the gate hands each elevation's start and end to a bounded shared-memory
//! `queue` (never the user's transaction, never a wait); the worker drains it into
//! `oncall.elevation_records` and applies the retention (`store`).

pub mod queue;
pub mod store;

/// How an elevation ended (`oncall.elevations.end_reason`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndReason {
    Reset,
    Switch,
    SessionEnd,
    ShiftEnd,
    MaxDuration,
    /// A `require_incident` rule: the user's last incident it admits was resolved (or reassigned).
    Refused,
}

impl EndReason {
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Reset => "reset",
            EndReason::Switch => "switch",
            EndReason::SessionEnd => "session_end",
            EndReason::ShiftEnd => "shift_end",
            EndReason::MaxDuration => "max_duration",
            EndReason::Refused => "refused",
        }
    }
}
