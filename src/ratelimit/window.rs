//! One fixed window's count and what it answers (SPEC §5): windows aligned to multiples of
//! their length since the Unix epoch, so every instance and backend agrees on when one ends.

use crate::model::RateLimit;
use crate::time::Millis;

/// The outcome of counting one request, and what the `X-RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub allowed: bool,
    pub limit: u64,
    /// After this request; never below 0.
    pub remaining: u64,
    /// Unix seconds at which the window ends.
    pub reset: i64,
    /// Whole seconds until `reset`, at least 1: the `Retry-After` of a 429.
    pub retry_after: u64,
}

impl Quota {
    /// Counts against a window that held `count` requests before this one. A denied request
    /// does not move the count, so 429s never push it past the limit.
    pub fn decide(rate: RateLimit, count_before: u64, now: Millis) -> (Self, u64) {
        let reset = window_end(rate, now);
        let allowed = count_before < rate.limit;
        let count = if allowed { count_before + 1 } else { count_before };
        let until_reset_ms = (reset * 1000 - now).max(0) as u64;
        let quota = Quota {
            allowed,
            limit: rate.limit,
            remaining: rate.limit.saturating_sub(count),
            reset,
            retry_after: until_reset_ms.div_ceil(1000).max(1),
        };
        (quota, count)
    }
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

    #[test]
    fn denied_requests_do_not_count_and_retry_after_is_at_least_one() {
        let (first, count) = Quota::decide(RATE, 0, 10_000);
        assert!(first.allowed);
        assert_eq!((first.remaining, first.reset, first.retry_after), (1, 60, 50));
        let (second, count) = Quota::decide(RATE, count, 59_500);
        assert!(second.allowed);
        assert_eq!((second.remaining, second.retry_after), (0, 1));
        let (third, after) = Quota::decide(RATE, count, 59_999);
        assert!(!third.allowed);
        assert_eq!((third.remaining, after, third.retry_after), (0, 2, 1));
    }
}
