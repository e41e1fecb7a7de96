//! The in-process fixed-window limiter: counters in a few mutex-guarded shards (a
//! `std::sync::Mutex`, as the critical section is short and never awaits), swept by a
//! background task so that idle keys do not accumulate. Keys are key ids the server generated
//! and reached only after authentication, so a fast non-DoS-resistant hash (foldhash) is safe.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{LimitError, Quota, RateLimiter, window_end};
use crate::model::RateLimit;
use crate::time::{Millis, now_millis};

const SHARDS: usize = 16;

#[derive(Clone, Copy)]
struct Window {
    /// Unix seconds at which the counted window ends; a different value starts afresh.
    end: i64,
    count: u64,
}

#[derive(Clone, Default)]
pub struct MemoryLimiter {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    hasher: RandomState,
    shards: [Mutex<HashMap<String, Window, RandomState>>; SHARDS],
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one request at `now`: the synchronous core, also used as the fallback of
    /// shared backends.
    pub fn hit_at(&self, key_id: &str, rate: RateLimit, now: Millis) -> Quota {
        let end = window_end(rate, now);
        let shard = &self.shared.shards[self.shared.hasher.hash_one(key_id) as usize % SHARDS];
        let mut counters = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let window = match counters.get_mut(key_id) {
            Some(window) => window,
            None => counters.entry(key_id.to_owned()).or_insert(Window { end, count: 0 }),
        };
        if window.end != end {
            *window = Window { end, count: 0 };
        }
        let (quota, count) = Quota::decide(rate, window.count, now);
        window.count = count;
        quota
    }

    /// Drops counters of windows that have ended.
    pub fn sweep(&self, now: Millis) {
        let now_seconds = now.div_euclid(1000);
        for shard in &self.shared.shards {
            let mut counters = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            counters.retain(|_, window| window.end > now_seconds);
        }
    }

    /// Sweeps every minute until `shutdown` fires.
    pub fn spawn_sweeper(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => limiter.sweep(now_millis()),
                    _ = shutdown.changed() => break,
                }
            }
        });
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(&self, key_id: &str, rate: RateLimit) -> Result<Quota, LimitError> {
        Ok(self.hit_at(key_id, rate, now_millis()))
    }

    async fn ping(&self) -> Result<(), LimitError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_resets_with_the_window() {
        let limiter = MemoryLimiter::new();
        let rate = RateLimit { limit: 2, window_seconds: 10 };
        assert!(limiter.hit_at("a", rate, 1_000).allowed);
        assert!(limiter.hit_at("a", rate, 2_000).allowed);
        assert!(!limiter.hit_at("a", rate, 3_000).allowed);
        assert!(limiter.hit_at("b", rate, 3_000).allowed);
        assert!(limiter.hit_at("a", rate, 10_000).allowed);
    }

    #[test]
    fn a_raised_limit_applies_mid_window() {
        let limiter = MemoryLimiter::new();
        let low = RateLimit { limit: 1, window_seconds: 10 };
        let high = RateLimit { limit: 3, window_seconds: 10 };
        assert!(limiter.hit_at("a", low, 1_000).allowed);
        assert!(!limiter.hit_at("a", low, 1_100).allowed);
        let quota = limiter.hit_at("a", high, 1_200);
        assert!(quota.allowed);
        assert_eq!(quota.remaining, 1);
    }

    #[test]
    fn sweep_forgets_ended_windows() {
        let limiter = MemoryLimiter::new();
        let rate = RateLimit { limit: 1, window_seconds: 10 };
        limiter.hit_at("a", rate, 1_000);
        limiter.sweep(10_000);
        assert!(limiter.hit_at("a", rate, 10_500).allowed);
        let total: usize = limiter.shared.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(total, 1);
    }
}
