//! What keeps the hot path off the store: a bounded cache of keys (with their tenants) by
//! secret hash, the union of allowlists for preflight, and the task that notices changes made
//! by other instances sharing the store.
//!
//! Unknown hashes are cached too (as `None`), so a flood of well-formed but unknown keys costs
//! one store read each at most once per invalidation. Every admin write flushes everything:
//! writes are rare, and a full flush cannot miss a dependent entry (a tenant's keys).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use quick_cache::sync::Cache;

use crate::model::KeyWithTenant;
use crate::origin::Origin;
use crate::secret::SecretHash;
use crate::store::{AllowlistEntry, Store, StoreError};
use crate::time::Millis;

const CAPACITY: usize = 100_000;

pub type CachedKey = Option<Arc<KeyWithTenant>>;

pub struct KeyCache {
    entries: Cache<SecretHash, CachedKey>,
    /// Bumped by every invalidation; a store read that started under an older generation is
    /// not cached, so a read racing an admin write cannot bring stale data back.
    generation: AtomicU64,
    fill: Mutex<()>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self { entries: Cache::new(CAPACITY), generation: AtomicU64::new(0), fill: Mutex::new(()) }
    }
}

impl KeyCache {
    /// The key with this secret hash: from the cache, else from the store (and then cached).
    pub async fn find(&self, store: &dyn Store, hash: &SecretHash) -> Result<CachedKey, StoreError> {
        if let Some(hit) = self.entries.get(hash) {
            crate::metrics::key_cache(true);
            return Ok(hit);
        }
        crate::metrics::key_cache(false);
        let generation = self.generation.load(Ordering::Acquire);
        let found = store.key_by_hash(hash).await?.map(Arc::new);
        let _fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            self.entries.insert(*hash, found.clone());
        }
        Ok(found)
    }

    pub fn invalidate(&self) {
        let _fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }
}

/// The union of the allowlists of keys that are not revoked: what a preflight (which carries
/// no credentials) is answered from.
#[derive(Default)]
pub struct Allowlists {
    entries: RwLock<Arc<Vec<AllowlistEntry>>>,
}

impl Allowlists {
    pub async fn reload(&self, store: &dyn Store) -> Result<(), StoreError> {
        let entries = Arc::new(store.allowlists().await?);
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
        Ok(())
    }

    /// True when a key that is neither revoked nor expired at `now` allows `origin`.
    pub fn allows(&self, origin: &Origin, now: Millis) -> bool {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner()).clone();
        entries.iter().any(|(pattern, expires_at)| expires_at.is_none_or(|at| now < at) && pattern.matches(origin))
    }
}
