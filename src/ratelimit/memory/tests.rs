use super::*;
use crate::model::{QuotaPlan, RateLimit};
use serde_json::json;

use crate::store::testing::{Elsewhere, memory_store};
use crate::store::{Store, UsageBatch, UsageCount};

async fn limiter() -> (MemoryLimiter, Arc<dyn Store>) {
    let store = memory_store().await;
    (MemoryLimiter::new(QuotaSeeds::new(Arc::clone(&store))), store)
}

fn window(limit: u64, window_seconds: u64) -> Budgets<'static> {
    Budgets {
        key_id: "a",
        tenant_id: "t",
        window: RateLimit { limit, window_seconds },
        key_quota: None,
        tenant_quota: None,
    }
}

#[tokio::test]
async fn counts_per_key_and_resets_with_the_window() {
    let (limiter, _) = limiter().await;
    let rate = window(2, 10);
    let other = Budgets { key_id: "b", ..rate };
    assert!(limiter.hit_at(&rate, 1_000).await.unwrap().allowed);
    assert!(limiter.hit_at(&rate, 2_000).await.unwrap().allowed);
    assert!(!limiter.hit_at(&rate, 3_000).await.unwrap().allowed);
    assert!(limiter.hit_at(&other, 3_000).await.unwrap().allowed);
    assert!(limiter.hit_at(&rate, 10_000).await.unwrap().allowed);
}

#[tokio::test]
async fn a_raised_limit_applies_mid_window() {
    let (limiter, _) = limiter().await;
    assert!(limiter.hit_at(&window(1, 10), 1_000).await.unwrap().allowed);
    assert!(!limiter.hit_at(&window(1, 10), 1_100).await.unwrap().allowed);
    let verdict = limiter.hit_at(&window(3, 10), 1_200).await.unwrap();
    assert!(verdict.allowed);
    assert_eq!(verdict.quota.remaining, 1);
}

#[tokio::test]
async fn sweep_forgets_ended_windows_and_periods() {
    let (limiter, _) = limiter().await;
    let rate = window(1, 10);
    limiter.hit_at(&rate, 1_000).await.unwrap();
    let daily = Budgets { key_id: "b", key_quota: Some(QuotaPlan::new(5, Period::Day)), ..window(100, 10) };
    limiter.hit_at(&daily, 1_000).await.unwrap();
    limiter.sweep(10_000);
    assert!(limiter.hit_at(&rate, 10_500).await.unwrap().allowed);
    let count = |limiter: &MemoryLimiter| limiter.shared.shards.iter().map(|s| lock(s).keys.len()).sum::<usize>();
    assert_eq!(count(&limiter), 2, "the daily quota outlives its window");
    limiter.sweep(86_400_000);
    assert_eq!(count(&limiter), 0);
}

/// Counts written by a flush in the current hour (`used` reads the period holding the real now).
async fn counted(store: &Arc<dyn Store>, key_id: &str, outcome: &'static str, requests: u64) {
    let now = now_millis();
    let hour_start = now - now % 3_600_000;
    let count = UsageCount {
        key_id: key_id.to_owned(),
        tenant_id: "t".to_owned(),
        hour_start,
        outcome,
        requests,
        last_used_at: now,
    };
    let batch = UsageBatch { id: crate::secret::random_base62(22), earlier: Vec::new(), counts: vec![count] };
    store.record_usage(&batch).await.unwrap();
}

#[tokio::test]
async fn a_quota_starts_from_the_stored_counts_of_its_period_but_refusals_at_step_four() {
    let (limiter, store) = limiter().await;
    let now = now_millis();
    // A stored key: a key's counts are read under its tenant.
    let admin = Elsewhere::on(&store);
    admin.tenant(json!({"id": "t", "name": "T"})).await;
    let (a, _) = admin.key("t", json!({"name": "a", "scopes": ["orders:read"]})).await;
    counted(&store, &a, "OK", 6).await;
    counted(&store, &a, "SCOPE_NOT_GRANTED", 1).await;
    counted(&store, &a, "RATE_LIMITED", 50).await;
    let budgets = Budgets { key_id: &a, key_quota: Some(QuotaPlan::new(10, Period::Month)), ..window(100, 60) };
    let used = limiter.used(budgets.key(), Period::Month).await.unwrap();
    assert_eq!(used.used, 7);
    let verdict = limiter.hit_at(&budgets, now).await.unwrap();
    assert_eq!((verdict.quota.limit, verdict.quota.remaining), (10, 2), "the quota is the headline");
    // Counted in memory from here on: the store is not read again.
    counted(&store, &a, "OK", 100).await;
    assert!(limiter.hit_at(&budgets, now).await.unwrap().allowed);
    assert!(limiter.hit_at(&budgets, now).await.unwrap().allowed);
    let refused = limiter.hit_at(&budgets, now + 1).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.refused_by, Some(BudgetName::KeyQuota));
    assert_eq!(refused.budgets[0].remaining, 97, "a refused request counts in no budget");
}

#[tokio::test]
async fn a_tenant_quota_is_shared_by_its_keys_and_a_refusal_counts_nowhere() {
    let (limiter, _) = limiter().await;
    let now = now_millis();
    let tenant_quota = Some(QuotaPlan::new(3, Period::Day));
    let keys: Vec<Budgets> = ["k1", "k2", "k3", "k4"]
        .into_iter()
        .map(|key_id| Budgets { key_id, tenant_quota, ..window(100, 60) })
        .collect();
    let admitted = {
        let mut admitted = 0;
        for round in 0..3 {
            for budgets in &keys {
                admitted += u64::from(limiter.hit_at(budgets, now + round).await.unwrap().allowed);
            }
        }
        admitted
    };
    assert_eq!(admitted, 3);
    let used = limiter.used(QuotaOf::Tenant("t"), Period::Day).await.unwrap();
    assert_eq!(used.used, 3);
    assert_eq!(used.resets_at, Period::Day.bounds(now).1 * 1000);
    let verdict = limiter.hit_at(&keys[3], now).await.unwrap();
    assert!(!verdict.allowed);
    assert_eq!(verdict.budgets[0].remaining, 100, "k4 was refused every time: its window is untouched");
}
