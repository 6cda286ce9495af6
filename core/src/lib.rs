//! pg_oncall's pure logic, testable without a server: who is on call (`decision`)
//! and how PagerDuty's `/oncalls` answers become shifts (`pagerduty`).
//! Nothing here touches PostgreSQL; the extension crate feeds it data and acts on its answers.

pub mod decision;
pub mod pagerduty;
