//! What keeps the hot path off the store: a bounded cache of keys (with their tenants) by
//! secret hash.
//!
//! Changes leave the cache one by one, as the change feed reports them (`feed.rs`): a changed
//! key by its hashes, through a key → hashes index, a changed tenant's keys through a tenant →
//! hashes index. Nothing else moves,
//! so an admin write costs the same with ten keys or ten million.
//!
//! Unknown keys cost no store read: a Bloom filter of every existing key's hash (`KnownKeys`,
//! built by streaming the store at start, and fed each key the change feed reports) answers
//! "certainly unknown" for nearly all of them. The rare false positive is looked up once and
//! remembered in a cache of its own, so unknown keys never push a real key out.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fastbloom::AtomicBloomFilter;

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

/// The filter's false-positive rate: the share of unknown keys that still cost a store read.
const FALSE_POSITIVE_RATE: f64 = 0.001;
/// The filter is sized for twice the keys there are (at least this many), and rebuilt when more
/// have been added than it was sized for.
const MIN_FILTER_ITEMS: usize = 100_000;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Known(Arc<KeyWithTenant>),
    /// Looked up (or remembered as looked up): no such key.
    Unknown,
    /// The filter of known keys rules it out, without a store read. A key created a moment ago
    /// on another instance is ruled out too, until its change arrives.
    RuledOut,
}

/// A SHA-256 is already uniform: its first 8 bytes serve as the filter's hash as they are.
fn source_hash(hash: &SecretHash) -> u64 {
    u64::from_le_bytes([hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7]])
}

/// The hashes of every key in the store, in a Bloom filter (a few bytes a key).
pub struct KnownKeys {
    filter: AtomicBloomFilter,
    capacity: usize,
    added: AtomicUsize,
}

impl KnownKeys {
    /// An empty filter with room for `keys` keys, and as many again.
    pub fn with_room_for(keys: u64) -> Self {
        let capacity = (keys as usize).saturating_mul(2).max(MIN_FILTER_ITEMS);
        let filter = AtomicBloomFilter::with_false_pos(FALSE_POSITIVE_RATE).expected_items(capacity);
        Self { filter, capacity, added: AtomicUsize::new(0) }
    }

    pub fn insert(&self, hash: &SecretHash) {
        self.filter.insert_hash(source_hash(hash));
        self.added.fetch_add(1, Ordering::Relaxed);
    }

    fn may_hold(&self, hash: &SecretHash) -> bool {
        self.filter.contains_hash(source_hash(hash))
    }

    /// More keys were added than it was sized for: its false-positive rate is climbing.
    fn is_full(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.capacity
    }
}

/// The hashes of the cached keys, by an id: each tenant's, and each key's (a rolled key is
/// cached under each secret it was presented with).
type HashIndex = Arc<Mutex<HashMap<String, HashSet<SecretHash, foldhash::fast::RandomState>>>>;

#[derive(Clone, Default)]
struct Indexes {
    by_tenant: HashIndex,
    by_key: HashIndex,
}

impl Indexes {
    fn index(&self, record: &KeyWithTenant, hash: &SecretHash) {
        for (index, id) in [(&self.by_tenant, &record.tenant.id), (&self.by_key, &record.key.id)] {
            index.lock().unwrap_or_else(|p| p.into_inner()).entry(id.clone()).or_default().insert(*hash);
        }
    }

    fn unindex(&self, record: &KeyWithTenant, hash: &SecretHash) {
        for (index, id) in [(&self.by_tenant, &record.tenant.id), (&self.by_key, &record.key.id)] {
            let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hashes) = index.get_mut(id) {
                hashes.remove(hash);
                if hashes.is_empty() {
                    index.remove(id);
                }
            }
        }
    }
}

/// Keeps the indexes in step when the cache evicts a key to make room.
#[derive(Clone)]
struct Unindex(Indexes);

impl Lifecycle<SecretHash, Arc<KeyWithTenant>> for Unindex {
    type RequestState = ();

    fn on_evict(&self, _: &mut (), hash: SecretHash, record: Arc<KeyWithTenant>) {
        self.0.unindex(&record, &hash);
    }
}

type Entries = Cache<SecretHash, Arc<KeyWithTenant>, UnitWeighter, DefaultHashBuilder, Unindex>;

pub struct KeyCache {
    entries: Entries,
    /// `None` until first loaded: every hash may then be a key.
    known: RwLock<Option<KnownKeys>>,
    unknown: Cache<SecretHash, ()>,
    indexes: Indexes,
    /// Bumped by every change applied; a store read that started under an older generation is
    /// not cached, so a read racing an admin write cannot bring stale data back.
    generation: AtomicU64,
    fill: Mutex<()>,
}

impl Default for KeyCache {
    fn default() -> Self {
        let indexes = Indexes::default();
        let entries = Cache::with(
            CAPACITY,
            CAPACITY as u64,
            UnitWeighter,
            DefaultHashBuilder::default(),
            Unindex(indexes.clone()),
        );
        Self {
            entries,
            known: RwLock::new(None),
            unknown: Cache::new(UNKNOWN_CAPACITY),
            indexes,
            generation: AtomicU64::new(0),
            fill: Mutex::new(()),
        }
    }
}

impl KeyCache {
    /// The key with this secret hash: from the cache, else from the store (and then cached).
    pub async fn find(&self, store: &dyn Store, hash: &SecretHash) -> Result<Lookup, StoreError> {
        if let Some(hit) = self.entries.get(hash) {
            crate::metrics::key_cache(true);
            return Ok(Lookup::Known(hit));
        }
        if !self.may_exist(hash) {
            crate::metrics::key_filtered();
            return Ok(Lookup::RuledOut);
        }
        if self.unknown.get(hash).is_some() {
            crate::metrics::key_cache(true);
            return Ok(Lookup::Unknown);
        }
        crate::metrics::key_cache(false);
        let generation = self.generation.load(Ordering::Acquire);
        let found = store.key_by_hash(hash).await?.map(Arc::new);
        let _fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            match &found {
                Some(record) => {
                    // Insert first: an eviction it causes takes the index locks itself.
                    self.entries.insert(*hash, Arc::clone(record));
                    self.indexes.index(record, hash);
                }
                None => self.unknown.insert(*hash, ()),
            }
        }
        Ok(found.map_or(Lookup::Unknown, Lookup::Known))
    }

    /// A key changed (or was created): it leaves the cache, known or unknown, and is known to
    /// exist from now on.
    pub fn key_changed(&self, hash: &SecretHash) {
        let _fill = self.begin_change();
        if let Some(known) = self.known.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            known.insert(hash);
        }
        self.unknown.remove(hash);
        if let Some((_, record)) = self.entries.remove(hash) {
            self.indexes.unindex(&record, hash);
        }
    }

    /// A key changed, or is gone: it leaves the cache under every hash it is cached by, those
    /// no store can name any more (a deleted key's) included.
    pub fn forget_key(&self, key_id: &str) {
        self.forget(&self.indexes.by_key, key_id);
    }

    /// A tenant changed: its cached keys leave the cache.
    pub fn forget_tenant(&self, tenant: &str) {
        self.forget(&self.indexes.by_tenant, tenant);
    }

    fn forget(&self, index: &HashIndex, id: &str) {
        let _fill = self.begin_change();
        let hashes = index.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned();
        for hash in hashes.into_iter().flatten() {
            if let Some((_, record)) = self.entries.remove(&hash) {
                self.indexes.unindex(&record, &hash);
            }
        }
    }

    /// Everything leaves the cache: after a missed stretch of the change feed.
    pub fn invalidate(&self) {
        let _fill = self.begin_change();
        self.entries.clear();
        self.unknown.clear();
        self.indexes.by_tenant.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.indexes.by_key.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Puts a freshly built filter of known keys in place.
    pub fn replace_known(&self, known: KnownKeys) {
        *self.known.write().unwrap_or_else(|p| p.into_inner()) = Some(known);
    }

    /// The filter of known keys needs rebuilding (it holds more keys than it was sized for).
    pub fn known_is_full(&self) -> bool {
        self.known.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(KnownKeys::is_full)
    }

    fn may_exist(&self, hash: &SecretHash) -> bool {
        self.known.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|known| known.may_hold(hash))
    }

    /// Holds off fills and makes every read already under way skip caching its result.
    fn begin_change(&self) -> std::sync::MutexGuard<'_, ()> {
        let fill = self.fill.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        fill
    }
}

#[cfg(test)]
mod tests;
