//! Counting on the request path, writing behind. A request notes its key, hour and outcome in
//! its serving thread's own shard (keygate serves on one runtime per core, so a shard's lock is
//! only ever contended by the flush); every `usage.flush_seconds` the flusher takes every
//! shard's counts, merges them by key, and writes them in one transaction, each count with its
//! latest request, which is the key's `lastUsedAt` ([`Store::record_usage`]). A flush costs in
//! proportion to the keys used since the last one.
//! A part whose write failed is kept with the id it was sent under and sent again as it was,
//! before anything newer: its answer may have been lost after its commit, and the store writes
//! an id once, so a count is never written twice. SIGTERM flushes before exit.

use std::cell::Cell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::response::Response;
use futures_util::future::join_all;

use super::Outcome;
use crate::model::KeyWithTenant;
use crate::secret::{SecretHash, random_base62};
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
    /// Parts whose write failed, for the next flush: at most one a write lane, since nothing
    /// newer is written until they are.
    unwritten: Arc<Mutex<Vec<Part>>>,
}

/// Counts sent to the store in one batch, under an id of their own.
struct Part {
    id: String,
    pending: Pending,
}

/// Padded to its own cache lines, so threads counting side by side do not share one.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    keys: Map<String, KeyUse>,
    /// Uses of earlier secrets of rolled keys, for their own `lastUsedAt`.
    earlier: Map<SecretHash, EarlierUse>,
}

/// The latest use of an earlier secret, and its key's tenant: it is written in the part that
/// writes the key's counts, so that no reader sees the secret used and its key not.
struct EarlierUse {
    tenant_id: String,
    last: Millis,
}

struct KeyUse {
    tenant_id: String,
    /// A key sees a handful of these between two flushes.
    counts: Vec<Count>,
}

/// Requests of one hour and outcome, and the latest of them.
#[derive(Clone, Copy)]
struct Count {
    hour: Millis,
    outcome: Outcome,
    requests: u64,
    last: Millis,
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
            None => pending
                .keys
                .entry(key.id.clone())
                .or_insert_with(|| KeyUse { tenant_id: key.tenant_id.clone(), counts: Vec::new() }),
        };
        used.add(Count { hour, outcome, requests: 1, last: at });
        if let Some(earlier) = &record.earlier {
            let used = pending
                .earlier
                .entry(earlier.hash)
                .or_insert_with(|| EarlierUse { tenant_id: key.tenant_id.clone(), last: at });
            used.last = used.last.max(at);
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

    /// Writes what is pending, merged from every shard, in parts. A part whose write fails is
    /// kept, whole and with its id, and `false` is answered; the next flush sends it again
    /// first, and takes newer counts only once it is written. Counts are never lost but to
    /// `kill -9`, and never written twice.
    pub async fn flush(&self, store: &dyn Store) -> bool {
        let retries = std::mem::take(&mut *lock(&self.unwritten));
        if !retries.is_empty() && !self.write(store, retries).await {
            // Newer counts wait in the shards, merged by key, however long the store is away.
            return false;
        }
        let mut merged = Pending::default();
        for shard in self.shards.iter() {
            let mut taken = std::mem::take(&mut *lock(&shard.0));
            // The smaller map goes into the larger: one busy thread's 50,000 keys are not
            // moved into an empty map one by one.
            if taken.keys.len() > merged.keys.len() {
                std::mem::swap(&mut merged, &mut taken);
            }
            merged.absorb(taken);
        }
        if merged.keys.is_empty() {
            return true;
        }
        // A store that takes several writes at once gets the batch in parts, by tenant, side by
        // side: each part one transaction.
        let parts = merged.split(store.usage_write_lanes());
        self.write(store, parts.into_iter().map(|pending| Part { id: random_base62(22), pending }).collect()).await
    }

    /// Writes `parts` side by side; keeps those that fail for the next flush.
    async fn write(&self, store: &dyn Store, parts: Vec<Part>) -> bool {
        let batches: Vec<UsageBatch> = parts.iter().map(|part| part.pending.batch(&part.id)).collect();
        let written = join_all(batches.iter().map(|batch| store.record_usage(batch))).await;
        let mut all = true;
        for (part, result) in parts.into_iter().zip(written) {
            if let Err(error) = result {
                all = false;
                tracing::warn!(%error, keys = part.pending.keys.len(), "could not write usage counts; will retry");
                lock(&self.unwritten).push(part);
            }
        }
        all
    }

    /// Flushes every `every` until `shutdown` fires, then once more (retried; see
    /// [`FINAL_FLUSH_PAUSES`]).
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
                    _ = tick.tick() => { recorder.flush(store.as_ref()).await; }
                    _ = shutdown.changed() => break,
                }
            }
            // The last flush has no next one: it is tried again a few times. A pooled store
            // connection opened on a serving thread fails once that thread's runtime ends; the
            // pool drops it, and the next try takes another.
            for pause in FINAL_FLUSH_PAUSES {
                if recorder.flush(store.as_ref()).await {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
            if !recorder.flush(store.as_ref()).await {
                tracing::error!("usage counts not written at shutdown: they are lost");
            }
        })
    }
}

/// The pauses between the tries of the last flush: about 1.5 s in all.
const FINAL_FLUSH_PAUSES: [Duration; 4] =
    [Duration::from_millis(50), Duration::from_millis(150), Duration::from_millis(400), Duration::from_millis(900)];

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl KeyUse {
    fn add(&mut self, count: Count) {
        match self.counts.iter_mut().find(|c| c.hour == count.hour && c.outcome == count.outcome) {
            Some(mine) => {
                mine.requests += count.requests;
                mine.last = mine.last.max(count.last);
            }
            None => self.counts.push(count),
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
                    for count in used.counts {
                        mine.add(count);
                    }
                }
            }
        }
        for (hash, used) in other.earlier {
            match self.earlier.entry(hash) {
                Entry::Occupied(mut mine) => {
                    mine.get_mut().last = mine.get().last.max(used.last);
                }
                Entry::Vacant(slot) => {
                    slot.insert(used);
                }
            }
        }
    }

    /// Up to `lanes` parts (one if `lanes` is 0 or 1; none empty), each key and earlier secret
    /// in its tenant's part, so that a tenant's keys, totals and earlier secrets are written by
    /// one transaction.
    fn split(self, lanes: usize) -> Vec<Pending> {
        if lanes <= 1 {
            return vec![self];
        }
        let mut parts: Vec<Pending> = (0..lanes).map(|_| Pending::default()).collect();
        let hasher = foldhash::fast::FixedState::default();
        let lane_of = |tenant_id: &str| hasher.hash_one(tenant_id) as usize % lanes;
        for (id, used) in self.keys {
            parts[lane_of(&used.tenant_id)].keys.insert(id, used);
        }
        for (hash, used) in self.earlier {
            parts[lane_of(&used.tenant_id)].earlier.insert(hash, used);
        }
        parts.retain(|part| !part.keys.is_empty() || !part.earlier.is_empty());
        parts
    }

    fn batch(&self, id: &str) -> UsageBatch {
        let mut batch = UsageBatch {
            id: id.to_owned(),
            earlier: self.earlier.iter().map(|(hash, used)| (*hash, used.last)).collect(),
            counts: Vec::with_capacity(self.keys.len()),
        };
        for (id, used) in &self.keys {
            batch.counts.extend(used.counts.iter().map(|count| UsageCount {
                key_id: id.clone(),
                tenant_id: used.tenant_id.clone(),
                hour_start: count.hour,
                outcome: count.outcome.as_str(),
                requests: count.requests,
                last_used_at: count.last,
            }));
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::hash_secret;

    #[test]
    fn a_split_keeps_each_tenant_s_keys_in_one_part_and_loses_nothing() {
        let mut whole = Pending::default();
        for tenant in 0..20 {
            for key in 0..5 {
                let count = Count { hour: 0, outcome: Outcome::Ok, requests: key + 1, last: 7 };
                let used = KeyUse { tenant_id: format!("t{tenant}"), counts: vec![count] };
                whole.keys.insert(format!("key_{tenant}_{key}"), used);
            }
        }
        whole.earlier.insert(hash_secret("kg_earlier"), EarlierUse { tenant_id: "t3".into(), last: 9 });
        let parts = whole.split(2);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| !part.keys.is_empty()), "twenty tenants fill both parts");
        let mut seen: Map<String, usize> = Map::default();
        for (lane, part) in parts.iter().enumerate() {
            for used in part.keys.values() {
                assert_eq!(*seen.entry(used.tenant_id.clone()).or_insert(lane), lane, "{}: one part", used.tenant_id);
            }
        }
        assert_eq!(parts.iter().map(|part| part.keys.len()).sum::<usize>(), 100);
        let requests: u64 = parts.iter().flat_map(|part| part.keys.values()).map(|used| used.counts[0].requests).sum();
        assert_eq!(requests, 20 * 15);
        let with_earlier: Vec<&Pending> = parts.iter().filter(|part| !part.earlier.is_empty()).collect();
        assert_eq!(with_earlier.len(), 1, "an earlier secret is written once");
        assert!(with_earlier[0].keys.values().any(|used| used.tenant_id == "t3"), "in its key's tenant's part");
        assert_eq!(Pending::default().split(1).len(), 1);
        let mut single = Pending::default();
        let count = Count { hour: 0, outcome: Outcome::Ok, requests: 1, last: 7 };
        single.keys.insert("key_a".into(), KeyUse { tenant_id: "t0".into(), counts: vec![count] });
        assert_eq!(single.split(2).len(), 1, "a part with nothing in it is not written");
    }
}
