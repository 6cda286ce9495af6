//! PagerDuty's pagination limits, which the fetchers and the error messages share.

/// PagerDuty's largest page.
pub const MAX_PAGE_LIMIT: u32 = 100;
/// PagerDuty answers 400 when `offset + limit` exceeds this.
pub const OFFSET_LIMIT_CAP: u32 = 10_000;
