//! The usage flush at scale (issue "Plans an API can be sold by"): on a store `keygate seed`
//! filled (bench/scale.sh runs this), KEYS of its keys are counted in one interval — one or
//! two outcomes each, through keygate's own recorder — and written by its own flush, timed,
//! ROUNDS times. Before those rounds, the same keys' counts of the HISTORY_HOURS hours before
//! this one are written, as a day of use leaves them, so that a flush writes into a table of
//! the size it has in steady use rather than into an empty one. Then 31 days of hourly counts are written for tenant `seed-7`'s keys, so that
//! bench/scale.sh can time the tenant's 31-day usage query over HTTP. Prints one JSON line.
//!
//! ```sh
//! KEYGATE_STORE_URL=sqlite://keygate.db cargo run --release --example usage_flush -- 50000
//! ```

use std::time::Instant;

use keygate::config::Config;
use keygate::model::KeyWithTenant;
use keygate::secret::random_base62;
use keygate::store::{Store, UsageBatch, UsageCount};
use keygate::time::now_millis;
use keygate::usage::{Outcome, UsageRecorder};

const ROUNDS: usize = 5;
const HISTORY_HOURS: i64 = 24;
const HOUR: i64 = 3_600_000;

/// The first `count` keys of the seeded tenants (`seed-0`, `seed-1`, …), with their tenants.
async fn seeded_keys(store: &dyn Store, count: usize) -> Vec<KeyWithTenant> {
    let mut records = Vec::with_capacity(count);
    for index in 0.. {
        let Some(tenant) = store.tenant(&format!("seed-{index}")).await.expect("the store answers") else { break };
        for key in store.keys(&tenant.id, None, None, 1000).await.expect("the store answers") {
            records.push(KeyWithTenant::new(key, tenant.clone(), None));
        }
        if records.len() >= count {
            break;
        }
    }
    records.truncate(count);
    records
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let keys: usize = std::env::args().nth(1).map_or(50_000, |n| n.parse().expect("a number of keys"));
    let config = Config::load(None, std::env::vars()).expect("KEYGATE_STORE_URL names a seeded store");
    let store = keygate::store::open(&config).await.expect("the store opens");
    let records = seeded_keys(store.as_ref(), keys).await;
    assert_eq!(records.len(), keys, "the store holds {keys} seeded keys");

    // The day before: each key's hours, in one batch an hour as flushes would have left them.
    let this_hour = now_millis() - now_millis().rem_euclid(HOUR);
    let started = Instant::now();
    for hour in 1..=HISTORY_HOURS {
        let hour_start = this_hour - hour * HOUR;
        let mut counts = Vec::with_capacity(records.len() * 6 / 5);
        for (i, record) in records.iter().enumerate() {
            let outcomes: &[&'static str] = if i % 5 == 0 { &["OK", "UPSTREAM_4XX"] } else { &["OK"] };
            for outcome in outcomes {
                counts.push(UsageCount {
                    key_id: record.key.id.clone(),
                    tenant_id: record.tenant.id.clone(),
                    hour_start,
                    outcome,
                    requests: 7,
                    last_used_at: hour_start + HOUR / 2,
                });
            }
        }
        store
            .record_usage(&UsageBatch { id: random_base62(22), earlier: Vec::new(), counts })
            .await
            .expect("the store takes the history");
    }
    let history_seconds = started.elapsed().as_secs_f64();

    let recorder = UsageRecorder::default();
    let mut flushes = Vec::new();
    for _ in 0..ROUNDS {
        let now = now_millis();
        for (i, record) in records.iter().enumerate() {
            recorder.record(record, now, Outcome::Ok);
            if i % 5 == 0 {
                recorder.record(record, now, Outcome::Upstream4xx);
            }
        }
        let started = Instant::now();
        assert!(recorder.flush(store.as_ref()).await, "the flush wrote everything");
        flushes.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    // In the order run: the first inserts the hour's rows, the others add to them.
    let rounds: Vec<String> = flushes.iter().map(|ms| format!("{ms:.1}")).collect();
    flushes.sort_by(f64::total_cmp);

    // 31 days of every hour for one tenant's keys, two outcomes each.
    let tenant = store.tenant("seed-7").await.expect("the store answers").expect("tenant seed-7");
    let tenant_keys = store.keys(&tenant.id, None, None, 1000).await.expect("the store answers");
    let mut counts = Vec::new();
    for hour in 0..31 * 24 {
        for key in &tenant_keys {
            for (outcome, requests) in [("OK", 40), ("UPSTREAM_4XX", 3)] {
                counts.push(UsageCount {
                    key_id: key.id.clone(),
                    tenant_id: tenant.id.clone(),
                    hour_start: this_hour - hour * HOUR,
                    outcome,
                    requests,
                    last_used_at: this_hour - hour * HOUR,
                });
            }
        }
    }
    let rows = counts.len();
    let batch = UsageBatch { id: random_base62(22), earlier: Vec::new(), counts };
    store.record_usage(&batch).await.expect("the store takes the tenant's month");
    println!(
        "{{\"keys\": {keys}, \"flushMs\": {{\"median\": {:.1}, \"max\": {:.1}, \"rounds\": [{}]}}, \"historyHours\": {HISTORY_HOURS}, \"historySeconds\": {history_seconds:.1}, \"tenantRows\": {rows}, \"tenantKeys\": {}}}",
        flushes[ROUNDS / 2],
        flushes[ROUNDS - 1],
        rounds.join(", "),
        tenant_keys.len()
    );
}
