//! Counting on the request path, writing behind. A request notes its key, hour and outcome in
//! its serving thread's own shard (keygate serves on one runtime per core, so a shard's lock is
//! only ever contended by the flush); every `usage.flush_seconds` the flusher takes every
//! shard's counts, merges them by key, and writes them in one transaction with `lastUsedAt`
//! ([`Store::record_usage`]). A flush costs in proportion to the keys used since the last one.
//! What a failed write held is kept and merged into the next; SIGTERM flushes before exit.

use std::cell::Cell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::response::Response;

use super::Outcome;
use crate::model::KeyWithTenant;
use crate::secret::SecretHash;
use crate::store::{Store, UsageBatch, UsageCount};
use crate::time::Millis;

const HOUR: Millis = 3_600_000;
/// More than there are serving threads on any machine keygate runs on; a thread past them
/// shares a shard, which only costs an occasionally contended lock.
const SHARDS: usize = 64;

/// Keyed by key ids of authenticated requests (server-generated), and by hashes of earlier
/// secrets that were found (SHA-256: uniform already), so foldhash is safe here.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Clone)]
pub struct UsageRecorder {
    shards: Arc<[Shard]>,
    /// What a failed write held, for the next flush.
    unwritten: Arc<Mutex<Pending>>,
}

/// Padded to its own cache lines, so threads counting side by side do not share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    keys: Map<String, KeyUse>,
    /// Uses of earlier secrets of rolled keys, for their own `lastUsedAt`.
    earlier: Map<SecretHash, Millis>,
}

struct KeyUse {
    tenant_id: String,
    last_used: Millis,
    /// (hour start, outcome, requests): a key sees a handful of these between two flushes.
    counts: Vec<(Millis, Outcome, u64)>,
}

impl Default for UsageRecorder {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| Shard::default()).collect(), unwritten: Arc::default() }
    }
}

/// A counted request, counted when dropped: with the outcome its response gave
/// ([`Tally::answered`]), or as [`Outcome::ClientClosed`] when the request was dropped before
/// one was made.
pub struct Tally<'a> {
    recorder: &'a UsageRecorder,
    record: &'a KeyWithTenant,
    at: Millis,
    outcome: Outcome,
}

impl Tally<'_> {
    pub fn answered(&mut self, response: &Response) {
        self.outcome = Outcome::of(response);
    }
}

impl Drop for Tally<'_> {
    fn drop(&mut self) {
        self.recorder.record(self.record, self.at, self.outcome);
    }
}

impl UsageRecorder {
    /// A request of `record`'s key judged at `at`, to be counted when the tally drops.
    pub fn tally<'a>(&'a self, record: &'a KeyWithTenant, at: Millis) -> Tally<'a> {
        Tally { recorder: self, record, at, outcome: Outcome::ClientClosed }
    }

    /// Counts one request of `record`'s key at `at`, and notes it as the key's (and the
    /// earlier secret's) latest use.
    pub fn record(&self, record: &KeyWithTenant, at: Millis, outcome: Outcome) {
        let hour = at - at.rem_euclid(HOUR);
        let mut pending = self.own_shard();
        let key = &record.key;
        let used = match pending.keys.get_mut(key.id.as_str()) {
            Some(used) => used,
            None => pending.keys.entry(key.id.clone()).or_insert_with(|| KeyUse {
                tenant_id: key.tenant_id.clone(),
                last_used: at,
                counts: Vec::new(),
            }),
        };
        used.last_used = used.last_used.max(at);
        used.add(hour, outcome, 1);
        if let Some(earlier) = &record.earlier {
            let last = pending.earlier.entry(earlier.hash).or_insert(at);
            *last = (*last).max(at);
        }
    }

    fn own_shard(&self) -> MutexGuard<'_, Pending> {
        thread_local! {
            static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let index = SHARD.with(|shard| match shard.get() {
            Some(index) => index,
            None => {
                let index = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
                shard.set(Some(index));
                index
            }
        });
        lock(&self.shards[index].0)
    }

    /// Writes what is pending, merged from every shard. On a store error it is kept for the
    /// next flush; counts are never lost but to `kill -9`.
    pub async fn flush(&self, store: &dyn Store) {
        let mut merged = std::mem::take(&mut *lock(&self.unwritten));
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *lock(&shard.0));
            merged.absorb(taken);
        }
        if merged.keys.is_empty() {
            return;
        }
        let batch = merged.batch();
        if let Err(error) = store.record_usage(&batch).await {
            tracing::warn!(%error, keys = merged.keys.len(), "could not write usage counts; will retry");
            let mut unwritten = lock(&self.unwritten);
            let newer = std::mem::take(&mut *unwritten);
            merged.absorb(newer);
            *unwritten = merged;
        }
    }

    /// Flushes every `every` until `shutdown` fires, then once more.
    pub fn spawn_flusher(
        &self,
        store: Arc<dyn Store>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let recorder = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => recorder.flush(store.as_ref()).await,
                    _ = shutdown.changed() => break,
                }
            }
            recorder.flush(store.as_ref()).await;
        })
    }
}

fn lock(mutex: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KeyUse {
    fn add(&mut self, hour: Millis, outcome: Outcome, requests: u64) {
        match self.counts.iter_mut().find(|(h, o, _)| *h == hour && *o == outcome) {
            Some((_, _, n)) => *n += requests,
            None => self.counts.push((hour, outcome, requests)),
        }
    }
}

impl Pending {
    fn absorb(&mut self, other: Pending) {
        for (id, used) in other.keys {
            match self.keys.entry(id) {
                Entry::Vacant(vacant) => {
                    vacant.insert(used);
                }
                Entry::Occupied(mut occupied) => {
                    let mine = occupied.get_mut();
                    mine.last_used = mine.last_used.max(used.last_used);
                    for (hour, outcome, n) in used.counts {
                        mine.add(hour, outcome, n);
                    }
                }
            }
        }
        for (hash, at) in other.earlier {
            let last = self.earlier.entry(hash).or_insert(at);
            *last = (*last).max(at);
        }
    }

    fn batch(&self) -> UsageBatch {
        let mut batch = UsageBatch {
            last_used: Vec::with_capacity(self.keys.len()),
            earlier: self.earlier.iter().map(|(hash, at)| (*hash, *at)).collect(),
            counts: Vec::with_capacity(self.keys.len()),
        };
        for (id, used) in &self.keys {
            batch.last_used.push((id.clone(), used.last_used));
            batch.counts.extend(used.counts.iter().map(|&(hour_start, outcome, requests)| UsageCount {
                key_id: id.clone(),
                tenant_id: used.tenant_id.clone(),
                hour_start,
                outcome: outcome.as_str(),
                requests,
            }));
        }
        batch
    }
}
