//! A restart keeps tenants, keys and signing keys: tokens minted before verify after.

use crate::common;

use std::sync::Arc;

use common::*;
use keygate::app::App;
use keygate::config::{Config, SessionAlgorithm};
use keygate::origin::Origin;
use keygate::session::SessionError;
use reqwest::Method;

/// Nothing of a stopped keygate holds its store any more, so its connections close: in one
/// process many keygates come and go (this test binary; an application that rebuilds one).
#[tokio::test]
async fn a_stopped_keygate_lets_go_of_its_store_and_so_of_its_connections() {
    let app = spawn_app().await;
    app.orders_key("acme", &["orders:read"]).await;
    let store = Arc::downgrade(&app.store);
    app.stop().await;
    for _ in 0..200 {
        if store.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the store outlived its keygate by 2 s: something still holds it, and its connections");
}

fn config_for(store: &TestStore, algorithm: SessionAlgorithm) -> Config {
    let mut config = Config::default();
    config.store.url = store.url.parse().unwrap();
    config.sessions.algorithm = algorithm;
    config
}

async fn mint_then_restart(algorithm: SessionAlgorithm) -> (TestApp, String, serde_json::Value, serde_json::Value) {
    let store = TestStore::new().await;
    let first = spawn_in(Arc::clone(&store), |c| c.sessions.algorithm = algorithm).await;
    let (key, secret) = first.browser_key("acme", &["sessions:create"]).await;
    let minted = first.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(minted.status, 201);
    let token = minted.body["data"]["sessionToken"].as_str().unwrap().to_owned();
    let jwks_before = first.get("/.well-known/jwks.json").await.body;
    first.stop().await;

    let second = spawn_in(store, |c| c.sessions.algorithm = algorithm).await;
    let tenant = second.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(tenant.status, 200);
    let again = second.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(again.status, 201, "the key survived the restart: {}", again.body);
    let new_token = again.body["data"]["sessionToken"].as_str().unwrap();
    assert_eq!(jwt_part(new_token, 0)["kid"], jwt_part(&token, 0)["kid"], "the signing key survived");
    (second, token, key, jwks_before)
}

#[tokio::test]
async fn hs256_tokens_minted_before_a_restart_verify_after() {
    let (second, token, key, _) = mint_then_restart(SessionAlgorithm::HS256).await;
    // The restarted instance's own verifier accepts the old token.
    let restarted = App::build(config_for(&second.test_store, SessionAlgorithm::HS256)).await.unwrap();
    let api_key = restarted.admin.key(key["id"].as_str().unwrap()).await.unwrap().key;
    let origin = Origin::parse(ORIGIN).unwrap();
    let sessions = restarted.pipeline.sessions();
    assert_eq!(sessions.verify(&token, &api_key, &origin, keygate::time::now_millis()), Ok(()));
    let other = Origin::parse("https://other.example").unwrap();
    assert_eq!(sessions.verify(&token, &api_key, &other, keygate::time::now_millis()), Err(SessionError::Invalid));
    let after_expiry = keygate::time::now_millis() + 3601 * 1000;
    assert_eq!(sessions.verify(&token, &api_key, &origin, after_expiry), Err(SessionError::Expired));
}

#[tokio::test]
async fn eddsa_keys_and_jwks_survive_a_restart() {
    let (second, token, _, jwks_before) = mint_then_restart(SessionAlgorithm::EdDSA).await;
    let jwks_after = second.get("/.well-known/jwks.json").await.body;
    assert_eq!(jwks_after, jwks_before);
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks_after).unwrap();
    let kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_owned();
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["keygate:session"]);
    assert!(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok());
}

#[tokio::test]
async fn an_admin_write_on_one_instance_reaches_another_within_a_second() {
    let store = TestStore::new().await;
    let one = spawn_in(Arc::clone(&store), |_| {}).await;
    let two = spawn_in(store, |_| {}).await;
    let (key, secret) = one.browser_key("acme", &["sessions:create"]).await;
    assert_eq!(two.mint(&secret, Some(ORIGIN)).await.status, 201, "instance two caches the key");
    one.admin_request(Method::POST, &format!("/admin/v1/keys/{}/revoke", key["id"].as_str().unwrap()), None).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    two.mint(&secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_REVOKED");
}

#[tokio::test]
async fn an_instance_that_missed_part_of_the_feed_resyncs_in_full_and_agrees() {
    let store = TestStore::new().await;
    let one = spawn_in(Arc::clone(&store), |_| {}).await;
    let two = spawn_in(Arc::clone(&store), |_| {}).await;
    let (_, secret) = one.browser_key("acme", &["sessions:create"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for instance in [&one, &two] {
        assert_eq!(instance.mint(&secret, Some(ORIGIN)).await.status, 201, "both instances cache the key");
    }
    let resyncs_before = one.metric("keygate_feed_resyncs_total").await;

    // A change the feed no longer holds, as if pruned while both instances were away: the
    // tenant is suspended and the revision moves, in one transaction, with no change recorded.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&store.url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'acme'").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE keygate_meta SET value = value + 1 WHERE name = 'revision'").execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
    // The next recorded change reveals the gap to both instances.
    one.create_tenant(serde_json::json!({ "id": "later", "name": "Later" })).await;

    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for instance in [&one, &two] {
        instance.mint(&secret, Some(ORIGIN)).await.assert_error(403, "TENANT_SUSPENDED");
    }
    assert!(one.metric("keygate_feed_resyncs_total").await >= resyncs_before + 2.0, "each instance resynced");
    // After the resync the feed is followed again, change by change.
    one.patch_tenant("acme", serde_json::json!({ "status": "active" })).await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    for instance in [&one, &two] {
        assert_eq!(instance.mint(&secret, Some(ORIGIN)).await.status, 201);
    }
}

#[tokio::test]
async fn a_dropped_notification_connection_is_made_again_and_ends_in_a_full_resync() {
    let store = TestStore::new().await;
    if !store.is_postgres() {
        eprintln!("PostgreSQL notifications: this test runs in the PostgreSQL pass of scripts/test");
        return;
    }
    let one = spawn_in(Arc::clone(&store), |_| {}).await;
    let two = spawn_in(Arc::clone(&store), |_| {}).await;
    let (key, secret) = one.browser_key("acme", &["sessions:create"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(two.mint(&secret, Some(ORIGIN)).await.status, 201, "instance two caches the key");
    let reconnects_before = two.metric("keygate_store_notification_reconnects_total").await;

    // A change no feed or notification announces (the revision does not move): only a full
    // resync, which drops every cached key, can show it.
    let pool = sqlx::PgPool::connect(&store.url).await.unwrap();
    sqlx::query("UPDATE tenants SET status = 'suspended' WHERE id = 'acme'").execute(&pool).await.unwrap();
    assert_eq!(two.mint(&secret, Some(ORIGIN)).await.status, 201, "still cached: nothing announced it");

    // Cut every LISTEN connection to this database, as a proxy or a failover would.
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(cut.len() >= 2, "both instances were listening: {cut:?}");
    pool.close().await;

    let started = std::time::Instant::now();
    for instance in [&one, &two] {
        while instance.mint(&secret, Some(ORIGIN)).await.code() != "TENANT_SUSPENDED" {
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "no full resync after the cut");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
    assert!(two.metric("keygate_store_notification_reconnects_total").await > reconnects_before);

    // Both instances follow the feed again, change by change.
    one.admin_request(Method::POST, &format!("/admin/v1/keys/{}/revoke", key["id"].as_str().unwrap()), None).await;
    one.patch_tenant("acme", serde_json::json!({ "status": "active" })).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for instance in [&one, &two] {
        instance.mint(&secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_REVOKED");
    }
}
