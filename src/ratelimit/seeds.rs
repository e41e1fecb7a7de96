//! Where a quota's count starts when the limiter holds none for the period — after a start, a
//! restart of Redis, or a quota set mid-period: the store's usage counts of the period (SPEC
//! §13), every counted request but those refused at step 4: `RATE_LIMITED`, and
//! `SERVICE_UNAVAILABLE`, which after step 3 only a failed limiter answers (under
//! `on_backend_error = "deny"`). They are written behind, so a
//! seed can be up to `usage.flush_seconds` short of what this instance counted; a `kill -9`
//! loses at most that interval's counts (docs/design.md).

use std::sync::Arc;

use super::{LimitError, QuotaOf};
use crate::error::ErrorCode;
use crate::store::{Store, UsageOf, UsageSelect};

#[derive(Clone)]
pub struct QuotaSeeds {
    store: Arc<dyn Store>,
}

const DAY_MS: i64 = 86_400_000;

impl QuotaSeeds {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The requests of `of` the store counted in `[start, end)` (Unix seconds, whole UTC days)
    /// that were admitted at step 4.
    pub async fn count(&self, of: QuotaOf<'_>, start: i64, end: i64) -> Result<u64, LimitError> {
        let of = match of {
            QuotaOf::Key { key_id, .. } => UsageOf::Key(key_id.to_owned()),
            QuotaOf::Tenant(tenant_id) => UsageOf::Tenant(tenant_id.to_owned()),
        };
        let select = UsageSelect { of, from: start * 1000, to: end * 1000, bucket: DAY_MS, by_key: false };
        let rows = self.store.usage(&select).await.map_err(|error| LimitError(format!("quota counts: {error}")))?;
        let refused = [ErrorCode::RateLimited, ErrorCode::ServiceUnavailable].map(|code| code.parts().0);
        Ok(rows.iter().filter(|row| !refused.contains(&row.outcome.as_str())).map(|row| row.requests).sum())
    }
}
