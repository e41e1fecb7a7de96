//! Step 4 (SPEC §5, §13): fixed windows of `windowSeconds`, aligned to multiples of the window
//! since the Unix epoch so that every instance and backend agrees on when a window ends, and
//! quotas by UTC calendar day and month, decided together (`budget`). The in-process backend
//! is the embedded default; Redis is the shared one.

mod budget;
mod failed_auth;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod seeds;
mod window;

use async_trait::async_trait;

use crate::model::{Period, QuotaPlan, QuotaUsed, RateLimit};

pub use budget::{Budget, BudgetName, Standing, UpToThree, Verdict, decide, ietf_headers};
pub use failed_auth::FailedAuthentications;
pub use memory::MemoryLimiter;
#[cfg(feature = "redis")]
pub use redis::RedisLimiter;
pub use seeds::QuotaSeeds;
pub use window::{Quota, window_end};

#[derive(Debug, thiserror::Error)]
#[error("rate-limit backend failed: {0}")]
pub struct LimitError(pub String);

/// Every budget one request of a key is decided against: the key's window, and the key's and
/// its tenant's quotas where they have one.
#[derive(Debug, Clone, Copy)]
pub struct Budgets<'a> {
    pub key_id: &'a str,
    pub tenant_id: &'a str,
    pub window: RateLimit,
    pub key_quota: Option<QuotaPlan>,
    pub tenant_quota: Option<QuotaPlan>,
}

impl Budgets<'_> {
    pub fn key(&self) -> QuotaOf<'_> {
        QuotaOf::Key { tenant_id: self.tenant_id, key_id: self.key_id }
    }

    pub fn tenant(&self) -> QuotaOf<'_> {
        QuotaOf::Tenant(self.tenant_id)
    }
}

/// Whose quota: one key's, or the sum over a tenant's keys. Both name the tenant, whose id is
/// the hash tag that puts every budget of a request in one Redis Cluster slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOf<'a> {
    Key { tenant_id: &'a str, key_id: &'a str },
    Tenant(&'a str),
}

impl QuotaOf<'_> {
    pub fn tenant_id(&self) -> &str {
        match self {
            Self::Key { tenant_id, .. } | Self::Tenant(tenant_id) => tenant_id,
        }
    }
}

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Decides one request against all its budgets, and counts it in all of them if admitted.
    async fn hit(&self, budgets: &Budgets<'_>) -> Result<Verdict, LimitError>;

    /// What `of`'s quota of `period` has counted in the current period, and when it resets.
    async fn used(&self, of: QuotaOf<'_>, period: Period) -> Result<QuotaUsed, LimitError>;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), LimitError>;
}
