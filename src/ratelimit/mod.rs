//! Rate limiting (SPEC §5): fixed windows of `windowSeconds`, aligned to multiples of the
//! window since the Unix epoch so that every instance and backend agrees on when a window
//! ends. The in-process backend is the embedded default; Redis is the shared one.

mod budget;
mod failed_auth;
mod memory;
mod redis;
mod window;

use async_trait::async_trait;

use crate::model::RateLimit;

pub use budget::{Budget, BudgetName, Period, Standing, Verdict, decide, ietf_headers};
pub use failed_auth::FailedAuthentications;
pub use memory::MemoryLimiter;
pub use redis::RedisLimiter;
pub use window::{Quota, window_end};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit backend failed: {0}")]
pub struct LimitError(pub String);

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one request of `key_id` under `rate`.
    async fn hit(&self, key_id: &str, rate: RateLimit) -> Result<Quota, LimitError>;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), LimitError>;
}
