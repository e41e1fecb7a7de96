//! A known key costs no store read: with the store gone, a cached key is still served, while a
//! key that is not cached gets 503 `SERVICE_UNAVAILABLE` with `Retry-After` — never a 401.

use crate::common;

use common::*;

#[tokio::test]
async fn cached_keys_survive_a_store_outage_and_uncached_ones_get_503() {
    let app = spawn_app().await;
    let (_, known) = app.browser_key("acme", &["sessions:create"]).await;
    let (_, unseen) = app.browser_key("globex", &["sessions:create"]).await;
    assert_eq!(app.mint(&known, Some(ORIGIN)).await.status, 201, "now cached");

    app.store.close().await;

    for _ in 0..3 {
        let seen = app.mint(&known, Some(ORIGIN)).await;
        assert_eq!(seen.status, 201, "served from the cache: {}", seen.body);
    }
    let seen = app.mint(&unseen, Some(ORIGIN)).await;
    seen.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(seen.header("retry-after"), Some("1"));
    assert!(!seen.has_cors());
    let ready = app.get("/readyz").await;
    ready.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(app.get("/healthz").await.status, 200, "alive, though not ready");
    // Malformed keys never needed the store.
    app.mint("kg_garbage", Some(ORIGIN)).await.assert_error(401, "API_KEY_INVALID");
}

#[tokio::test]
async fn a_corrupt_row_is_an_opaque_500_not_a_retry() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.test_store.url).await.unwrap();
    sqlx::query("UPDATE api_keys SET scopes = 'not json' WHERE id = $1")
        .bind(key["id"].as_str().unwrap().to_owned())
        .execute(&pool)
        .await
        .unwrap();
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    seen.assert_error(500, "INTERNAL_ERROR");
    assert_eq!(seen.body["error"]["message"], "internal error", "no internals leaked");
    let seen =
        app.admin_request(reqwest::Method::GET, &format!("/admin/v1/keys/{}", key["id"].as_str().unwrap()), None).await;
    seen.assert_error(500, "INTERNAL_ERROR");
    assert!(!seen.body.to_string().contains("json"));
}
