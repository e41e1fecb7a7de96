//! Fixed windows (SPEC §5), aligned to multiples of their length since the Unix epoch so that
//! every instance and backend agrees on when one ends, and what step 4 answers of the budget
//! `X-RateLimit-*` describe (decided by `budget::decide`).

use crate::model::RateLimit;
use crate::time::Millis;

/// The outcome of step 4, and what the `X-RateLimit-*` headers say of its headline budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub allowed: bool,
    pub limit: u64,
    /// After this request; never below 0.
    pub remaining: u64,
    /// Unix seconds at which the budget's window or period ends.
    pub reset: i64,
    /// Whole seconds until `reset`, at least 1: the `Retry-After` of a 429.
    pub retry_after: u64,
}

/// Unix seconds at which the window holding `now` ends.
pub fn window_end(rate: RateLimit, now: Millis) -> i64 {
    let window = rate.window_seconds.max(1) as i64;
    let now_seconds = now.div_euclid(1000);
    now_seconds - now_seconds.rem_euclid(window) + window
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: RateLimit = RateLimit { limit: 2, window_seconds: 60 };

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(window_end(RATE, 0), 60);
        assert_eq!(window_end(RATE, 59_999), 60);
        assert_eq!(window_end(RATE, 60_000), 120);
    }
}
