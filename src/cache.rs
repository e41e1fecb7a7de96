//! What keeps the hot path off the store: a bounded cache of keys (with their tenants) by
//! secret hash.
//!
//! Changes leave the cache one by one, as the change feed reports them (`watch.rs`): a changed
//! key by its hash, a changed tenant's keys through a tenant → hashes index. Nothing else moves,
//! so an admin write costs the same with ten keys or ten million.
//!
//! Unknown hashes are remembered in a cache of their own, so a flood of well-formed but unknown
//! keys costs one store read each at most, and never pushes a real key out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use foldhash::HashMap;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, UnitWeighter};

use crate::model::KeyWithTenant;
use crate::secret::SecretHash;
use crate::store::{Store, StoreError};

/// Real keys cached.
const CAPACITY: usize = 100_000;
/// Unknown hashes remembered, apart from the real keys.
const UNKNOWN_CAPACITY: usize = 100_000;

pub type CachedKey = Option<Arc<KeyWithTenant>>;

/// The hashes of each tenant's cached keys.
type TenantIndex = Arc<Mutex<HashMap<String, HashSet<SecretHash, foldhash::fast::RandomState>>>>;

/// Keeps the tenant index in step when the cache evicts a key to make room.
#[derive(Clone)]
struct Unindex(TenantIndex);

impl Lifecycle<SecretHash, Arc<KeyWithTenant>> for Unindex {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), hash: SecretHash, record: Arc<KeyWithTenant>) {
        unindex(&self.0, &record.tenant.id, &hash);
    }
}

fn unindex(index: &TenantIndex, tenant: &str, hash: &SecretHash) {
    let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hashes) = index.get_mut(tenant) {
        hashes.remove(hash);
        if hashes.is_empty() {
            index.remove(tenant);
        }
    }
}

type Entries = Cache<SecretHash, Arc<KeyWithTenant>, UnitWeighter, DefaultHashBuilder, Unindex>;

pub struct KeyCache {
    entries: Entries,
    unknown: Cache<SecretHash, ()>,
    by_tenant: TenantIndex,
    /// Bumped by every change applied; a store read that started under an older generation is
    /// not cached, so a read racing an admin write cannot bring stale data back.
    generation: AtomicU64,
    fill: Mutex<()>,
}

impl Default for KeyCache {
    fn default() -> Self {
        let by_tenant = TenantIndex::default();
        let entries = Cache::with(
            CAPACITY,
            CAPACITY as u64,
            UnitWeighter,
            DefaultHashBuilder::default(),
            Unindex(Arc::clone(&by_tenant)),
        );
        Self {
            entries,
            unknown: Cache::new(UNKNOWN_CAPACITY),
            by_tenant,
            generation: AtomicU64::new(0),
            fill: Mutex::new(()),
        }
    }
}

impl KeyCache {
    /// The key with this secret hash: from the cache, else from the store (and then cached).
    pub async fn find(&self, store: &dyn Store, hash: &SecretHash) -> Result<CachedKey, StoreError> {
        if let Some(hit) = self.entries.get(hash) {
            crate::metrics::key_cache(true);
            return Ok(Some(hit));
        }
        if self.unknown.get(hash).is_some() {
            crate::metrics::key_cache(true);
            return Ok(None);
        }
        crate::metrics::key_cache(false);
        let generation = self.generation.load(Ordering::Acquire);
        let found = store.key_by_hash(hash).await?.map(Arc::new);
        let _fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            match &found {
                Some(record) => {
                    // Insert first: an eviction it causes takes the index lock itself.
                    self.entries.insert(*hash, Arc::clone(record));
                    let mut index = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
                    index.entry(record.tenant.id.clone()).or_default().insert(*hash);
                }
                None => self.unknown.insert(*hash, ()),
            }
        }
        Ok(found)
    }

    /// A key changed (or was created): it leaves the cache, known or unknown.
    pub fn forget_key(&self, hash: &SecretHash) {
        let _fill = self.begin_change();
        self.unknown.remove(hash);
        if let Some((_, record)) = self.entries.remove(hash) {
            unindex(&self.by_tenant, &record.tenant.id, hash);
        }
    }

    /// A tenant changed: its cached keys leave the cache.
    pub fn forget_tenant(&self, tenant: &str) {
        let _fill = self.begin_change();
        let hashes = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner()).remove(tenant);
        for hash in hashes.into_iter().flatten() {
            self.entries.remove(&hash);
        }
    }

    /// Everything leaves the cache: after a missed stretch of the change feed.
    pub fn invalidate(&self) {
        let _fill = self.begin_change();
        self.entries.clear();
        self.unknown.clear();
        self.by_tenant.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Holds off fills and makes every read already under way skip caching its result.
    fn begin_change(&self) -> std::sync::MutexGuard<'_, ()> {
        let fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        fill
    }
}
