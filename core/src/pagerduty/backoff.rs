//! Delays between attempts: the worker's between-syncs backoff and the short in-sync retry waits.
//! Jitter comes from a caller-supplied seed so there is no global random state.

use std::time::Duration;

const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Delay before the next sync after `consecutive_failures` failed ones: 5 s doubling per failure,
/// capped at 5 min, then scaled by a jitter factor in [0.75, 1.0] drawn from `jitter_seed` (so
/// many clusters failing together do not retry in lockstep). Zero failures means no delay.
pub fn backoff_delay(consecutive_failures: u32, jitter_seed: u64) -> Duration {
    if consecutive_failures == 0 {
        return Duration::ZERO;
    }
    jittered(exponential(BACKOFF_BASE, consecutive_failures, BACKOFF_CAP), jitter_seed)
}

/// `base * 2^(attempt-1)`, saturating at `cap`.
pub(crate) fn exponential(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    base.checked_mul(1u32 << doublings).map_or(cap, |d| d.min(cap))
}

/// Scales `nominal` into [0.75, 1.0] of itself.
pub(crate) fn jittered(nominal: Duration, seed: u64) -> Duration {
    let fraction = (splitmix64(seed) >> 11) as f64 / (1u64 << 53) as f64;
    nominal.mul_f64(0.75 + 0.25 * fraction)
}

pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_failures_means_no_delay() {
        assert_eq!(backoff_delay(0, 42), Duration::ZERO);
    }

    #[test]
    fn doubles_from_five_seconds_within_jitter() {
        for seed in 0..200u64 {
            for (failures, nominal) in [(1u32, 5u64), (2, 10), (3, 20), (4, 40), (6, 160)] {
                let d = backoff_delay(failures, seed);
                let nominal = Duration::from_secs(nominal);
                assert!(d <= nominal && d >= nominal.mul_f64(0.75), "{failures} {seed} {d:?}");
            }
        }
    }

    #[test]
    fn capped_at_five_minutes_even_for_huge_counts() {
        for failures in [7u32, 9, 31, 32, 64, u32::MAX] {
            for seed in [0u64, 1, u64::MAX] {
                let d = backoff_delay(failures, seed);
                assert!(d <= BACKOFF_CAP && d >= BACKOFF_CAP.mul_f64(0.75), "{failures} {d:?}");
            }
        }
    }

    #[test]
    fn jitter_varies_with_seed() {
        let delays: std::collections::HashSet<_> = (0..50u64).map(|s| backoff_delay(3, s)).collect();
        assert!(delays.len() > 40);
    }
}
