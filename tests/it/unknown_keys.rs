//! Unknown keys cost nothing: a flood of distinct, well-formed keys that do not exist reaches
//! the store only for the filter's rare false positives, and never pushes a real key out of the
//! cache. It runs alone ([`common::metrics_alone`]): the cache metrics are process-wide.

use crate::common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_keys_costs_no_store_reads_and_evicts_nothing() {
    let _alone = metrics_alone().await;
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    let misses_before = app.metric("keygate_key_cache_misses_total").await;
    let filtered_before = app.metric("keygate_unknown_keys_filtered_total").await;

    // 50 at a time: requests waiting for a catch-up with the feed share it.
    const FLOOD: usize = 2_000;
    for _ in 0..FLOOD / 50 {
        let batch = (0..50).map(|_| {
            let unknown = keygate::secret::generate_secret("kg").secret;
            let app = &app;
            async move { app.mint(&unknown, Some(ORIGIN)).await }
        });
        for seen in futures_util::future::join_all(batch).await {
            seen.assert_error(401, "API_KEY_INVALID");
        }
    }
    let store_reads = app.metric("keygate_key_cache_misses_total").await - misses_before;
    let filtered = app.metric("keygate_unknown_keys_filtered_total").await - filtered_before;
    // The filter's false-positive rate is 0.1%: a handful of reads at most.
    assert!(store_reads <= 10.0, "{store_reads} store reads for {FLOOD} unknown keys");
    assert_eq!(filtered + store_reads, FLOOD as f64);

    let misses_before = app.metric("keygate_key_cache_misses_total").await;
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    assert_eq!(app.metric("keygate_key_cache_misses_total").await, misses_before, "the real key is still cached");
}

/// Credentials in no format of keygate's (what imported keys may look like) are looked up by
/// hash, and cost no store read either when unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_credentials_costs_no_store_reads_either() {
    let _alone = metrics_alone().await;
    let app = spawn_app().await;
    let misses_before = app.metric("keygate_key_cache_misses_total").await;
    const FLOOD: usize = 1_000;
    for round in 0..FLOOD / 50 {
        let batch = (0..50).map(|n| {
            let garbage = format!("{}-{round}-{n}", keygate::secret::random_base62(1 + n % 40));
            let app = &app;
            async move { app.mint(&garbage, Some(ORIGIN)).await }
        });
        for seen in futures_util::future::join_all(batch).await {
            seen.assert_error(401, "API_KEY_INVALID");
        }
    }
    let store_reads = app.metric("keygate_key_cache_misses_total").await - misses_before;
    assert!(store_reads <= 10.0, "{store_reads} store reads for {FLOOD} garbage credentials");
}
