//! The usage queries of the admin API and the CLI (SPEC §13): a key's usage, or a tenant's
//! (its keys' summed, or split by key). The query is checked whole before the store is read.

use super::{Admin, store_error};
use crate::error::ApiError;
use crate::store::UsageOf;
use crate::usage::{UsageAnswer, UsageQuery};

impl Admin {
    pub async fn key_usage(&self, id: &str, query: &UsageQuery) -> Result<UsageAnswer, ApiError> {
        let select = query.select(UsageOf::Key(id.to_owned()))?;
        self.store.key(id).await.map_err(store_error)?.ok_or_else(|| ApiError::not_found("API key"))?;
        Ok(UsageAnswer::of(self.store.usage(&select).await.map_err(store_error)?, select.by_key))
    }

    /// Deleted keys' usage included: a tenant's usage is what it was billed for.
    pub async fn tenant_usage(&self, id: &str, query: &UsageQuery) -> Result<UsageAnswer, ApiError> {
        let select = query.select(UsageOf::Tenant(id.to_owned()))?;
        self.stored_tenant(id).await?;
        Ok(UsageAnswer::of(self.store.usage(&select).await.map_err(store_error)?, select.by_key))
    }
}
