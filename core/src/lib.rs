//! pg_oncall's pure logic, testable without a server: how PagerDuty's `/oncalls` and
//! `/incidents` answers become shifts and open incidents, and how notes are posted on incidents
//! (`pagerduty`), who is on call (`decision`), which gates a role is reached through
//! (`membership`), and the text of audit lines (`audit`).
//! Nothing here touches PostgreSQL; the extension crate feeds it data and acts on its answers.

pub mod audit;
pub mod decision;
pub mod membership;
pub mod pagerduty;
