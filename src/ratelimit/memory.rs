//! The in-process limiter: every budget's counter in a few mutex-guarded shards (a
//! `std::sync::Mutex`, as the critical section is short and never awaits), swept by a
//! background task so that ended windows and periods do not accumulate. A key's window and
//! quotas live in its key's shard, a tenant's quotas in its tenant's; a request that needs both
//! shards takes them in shard order, so two requests never wait on each other in a circle.
//! Keys are ids the server generated, reached only after authentication, so a fast
//! non-DoS-resistant hash (foldhash) is safe.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::fast::RandomState;

use super::{
    Budget, BudgetName, Budgets, LimitError, QuotaOf, QuotaSeeds, RateLimiter, UpToThree, Verdict, decide, window_end,
};
use crate::model::{Period, QuotaUsed};
use crate::time::{Millis, now_millis};

const SHARDS: usize = 16;

/// One budget's count in the period that ends at `end` (Unix seconds); another end starts
/// afresh.
#[derive(Debug, Clone, Copy)]
struct Counter {
    end: i64,
    count: u64,
}

/// A quota's counters, one per period kind (a quota's period may be changed mid-period).
type PeriodCounters = [Option<Counter>; 2];

fn slot(period: Period) -> usize {
    match period {
        Period::Day => 0,
        Period::Month => 1,
    }
}

#[derive(Default)]
struct KeyCounters {
    window: Option<Counter>,
    quota: PeriodCounters,
}

#[derive(Default)]
struct Shard {
    keys: HashMap<String, KeyCounters, RandomState>,
    tenants: HashMap<String, PeriodCounters, RandomState>,
}

/// Seeds for the quotas this request found no count of, for the periods holding `now`.
#[derive(Debug, Default, Clone, Copy)]
struct Seeded {
    key: Option<u64>,
    tenant: Option<u64>,
}

/// Which quotas need a seed before the request can be decided.
#[derive(Debug, Clone, Copy)]
struct Unseeded {
    key: bool,
    tenant: bool,
}

#[derive(Clone)]
pub struct MemoryLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    hasher: RandomState,
    shards: [Mutex<Shard>; SHARDS],
    seeds: QuotaSeeds,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl MemoryLimiter {
    pub fn new(seeds: QuotaSeeds) -> Self {
        let shared = Shared { hasher: RandomState::default(), shards: Default::default(), seeds };
        Self { shared: Arc::new(shared) }
    }

    fn shard_of(&self, id: &str) -> usize {
        self.shared.hasher.hash_one(id) as usize % SHARDS
    }

    /// Decides at `now` under the shards' locks, or tells which quotas need a seed first (then
    /// nothing is counted).
    fn try_hit(&self, budgets: &Budgets<'_>, now: Millis, seeded: Seeded) -> Result<Verdict, Unseeded> {
        let key_shard = self.shard_of(budgets.key_id);
        let tenant_shard = budgets.tenant_quota.map(|_| self.shard_of(budgets.tenant_id));
        let shards = &self.shared.shards;
        match tenant_shard {
            None => decide_in(&mut lock(&shards[key_shard]).keys, None, budgets, now, seeded),
            Some(tenant_shard) if tenant_shard == key_shard => {
                let mut guard = lock(&shards[key_shard]);
                let shard = &mut *guard;
                decide_in(&mut shard.keys, Some(&mut shard.tenants), budgets, now, seeded)
            }
            Some(tenant_shard) => {
                let (mut keys, mut tenants) = if key_shard < tenant_shard {
                    let keys = lock(&shards[key_shard]);
                    (keys, lock(&shards[tenant_shard]))
                } else {
                    let tenants = lock(&shards[tenant_shard]);
                    (lock(&shards[key_shard]), tenants)
                };
                decide_in(&mut keys.keys, Some(&mut tenants.tenants), budgets, now, seeded)
            }
        }
    }

    /// Decides one request at `now`, seeding its quotas from the store where this process has
    /// no count of their period yet.
    pub async fn hit_at(&self, budgets: &Budgets<'_>, now: Millis) -> Result<Verdict, LimitError> {
        let unseeded = match self.try_hit(budgets, now, Seeded::default()) {
            Ok(verdict) => return Ok(verdict),
            Err(unseeded) => unseeded,
        };
        let seeds = &self.shared.seeds;
        let seed = |of, quota: Option<crate::model::QuotaPlan>, needed: bool| async move {
            match quota.filter(|_| needed) {
                Some(quota) => {
                    let (start, end) = quota.period.bounds(now);
                    seeds.count(of, start, end).await.map(Some)
                }
                None => Ok(None),
            }
        };
        let seeded = Seeded {
            key: seed(budgets.key(), budgets.key_quota, unseeded.key).await?,
            tenant: seed(budgets.tenant(), budgets.tenant_quota, unseeded.tenant).await?,
        };
        self.try_hit(budgets, now, seeded).map_err(|_| LimitError("a quota's seed was not taken".to_owned()))
    }

    /// Drops counters of windows and periods that have ended.
    pub fn sweep(&self, now: Millis) {
        let now_seconds = now.div_euclid(1000);
        let live = |counter: &mut Option<Counter>| {
            if counter.is_some_and(|c| c.end <= now_seconds) {
                *counter = None;
            }
            counter.is_some()
        };
        for shard in &self.shared.shards {
            let mut shard = lock(shard);
            shard.keys.retain(|_, counters| {
                let window = live(&mut counters.window);
                let quotas = counters.quota.iter_mut().fold(false, |any, counter| live(counter) | any);
                window || quotas
            });
            shard.tenants.retain(|_, counters| counters.iter_mut().fold(false, |any, counter| live(counter) | any));
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

/// A quota's counter for the period ending at `end`: the one held, else one started from
/// `seed`; `None` when neither is there.
fn quota_counter(held: &mut Option<Counter>, end: i64, seed: Option<u64>) -> Option<&mut Counter> {
    if held.is_none_or(|counter| counter.end != end) {
        *held = Some(Counter { end, count: seed? });
    }
    held.as_mut()
}

fn decide_in(
    keys: &mut HashMap<String, KeyCounters, RandomState>,
    tenants: Option<&mut HashMap<String, PeriodCounters, RandomState>>,
    budgets: &Budgets<'_>,
    now: Millis,
    seeded: Seeded,
) -> Result<Verdict, Unseeded> {
    let key = match keys.get_mut(budgets.key_id) {
        Some(key) => key,
        None => keys.entry(budgets.key_id.to_owned()).or_default(),
    };
    let window_end = window_end(budgets.window, now);
    let window = key.window.filter(|w| w.end == window_end).unwrap_or(Counter { end: window_end, count: 0 });
    let window = key.window.insert(window);
    let mut counters: UpToThree<(Budget, &mut Counter)> = UpToThree::new();
    let seconds = budgets.window.window_seconds as i64;
    let window_budget = |counter: &Counter| Budget {
        name: BudgetName::Window,
        limit: budgets.window.limit,
        start: counter.end - seconds,
        end: counter.end,
        count_before: counter.count,
    };
    counters.push((window_budget(window), window));
    let mut unseeded = Unseeded { key: false, tenant: false };
    if let Some(quota) = budgets.key_quota {
        let (start, end) = quota.period.bounds(now);
        match quota_counter(&mut key.quota[slot(quota.period)], end, seeded.key) {
            Some(counter) => {
                let budget =
                    Budget { name: BudgetName::KeyQuota, limit: quota.limit, start, end, count_before: counter.count };
                counters.push((budget, counter));
            }
            None => unseeded.key = true,
        }
    }
    if let (Some(quota), Some(tenants)) = (budgets.tenant_quota, tenants) {
        // Looked up by `&str`, so the id is copied only for a tenant's first counter.
        if !tenants.contains_key(budgets.tenant_id) {
            tenants.insert(budgets.tenant_id.to_owned(), PeriodCounters::default());
        }
        let Some(tenant) = tenants.get_mut(budgets.tenant_id) else {
            return Err(Unseeded { key: false, tenant: true }); // never: inserted above
        };
        let (start, end) = quota.period.bounds(now);
        match quota_counter(&mut tenant[slot(quota.period)], end, seeded.tenant) {
            Some(counter) => {
                let budget = Budget {
                    name: BudgetName::TenantQuota,
                    limit: quota.limit,
                    start,
                    end,
                    count_before: counter.count,
                };
                counters.push((budget, counter));
            }
            None => unseeded.tenant = true,
        }
    }
    if unseeded.key || unseeded.tenant {
        return Err(unseeded);
    }
    let list: UpToThree<Budget> = counters.iter().map(|(budget, _)| *budget).collect();
    let verdict = decide(&list, now);
    if verdict.allowed {
        for (_, counter) in counters {
            counter.count += 1;
        }
    }
    Ok(verdict)
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(&self, budgets: &Budgets<'_>) -> Result<Verdict, LimitError> {
        self.hit_at(budgets, now_millis()).await
    }

    async fn used(&self, of: QuotaOf<'_>, period: Period) -> Result<QuotaUsed, LimitError> {
        let now = now_millis();
        let (start, end) = period.bounds(now);
        let held = match of {
            QuotaOf::Key { key_id, .. } => {
                lock(&self.shared.shards[self.shard_of(key_id)]).keys.get(key_id).and_then(|k| k.quota[slot(period)])
            }
            QuotaOf::Tenant(tenant_id) => {
                lock(&self.shared.shards[self.shard_of(tenant_id)]).tenants.get(tenant_id).and_then(|t| t[slot(period)])
            }
        };
        let used = match held.filter(|counter| counter.end == end) {
            Some(counter) => counter.count,
            None => self.shared.seeds.count(of, start, end).await?,
        };
        Ok(QuotaUsed { used, resets_at: end * 1000 })
    }

    async fn ping(&self) -> Result<(), LimitError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
