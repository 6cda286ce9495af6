//! Notes on incidents: each new elevation of a user with open incidents hands one note per
//! incident to a bounded shared-memory `queue` (never a wait, never the user's transaction);
//! the worker `post`s them to PagerDuty from a helper thread, with retries, and counts the
//! outcome for `oncall.status()`.

pub mod post;
pub mod queue;
