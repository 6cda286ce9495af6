//! The gate: decisions turned into enforcement. `hooks` is what each PostgreSQL hook does
//! (installed by the C shim in `pg/hooks.c`): `switch` judges every route through the `role`
//! setting, `statement` every statement run as a gated role, `membership` statements
//! authorized by membership, `login` logins as `gate_login` roles, and `catalog` keeps the
//! rules consistent with the catalog, `elevation` each stretch with a gated role current.
//! `audit` writes the audit lines, `messages` what a refused user reads, `stats` the counters
//! of `oncall.stats()`.

mod audit;
mod catalog;
mod elevation;
pub mod hooks;
mod login;
mod membership;
mod messages;
mod statement;
pub mod stats;
mod switch;
