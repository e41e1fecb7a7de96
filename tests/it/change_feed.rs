//! The change feed between two instances on one store: every kind of admin change made on one
//! is enforced by the other within a second, and keys the change did not touch stay cached
//! there (the cache-miss count does not move when they are used).
//!
//! The first test runs alone ([`common::metrics_alone`]): the cache metrics are process-wide,
//! so no other test may run requests beside it.

use crate::common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::cli::Via;
use common::*;
use serde_json::{Value, json};

/// Polls `check` until it holds; returns how long that took, failing after 1 s.
async fn within_a_second<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(1), "{what}: not enforced within 1 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

/// The CLI on the store itself (`--store`): a writer the serving instances hear of only
/// through the change feed.
fn cli(store: &TestStore, args: &[&str]) -> Value {
    Via::Store(store).ok(args)
}

/// Instance `b` serves; `a` makes every admin change.
struct Pair {
    a: TestApp,
    b: TestApp,
    /// Keys no change below touches, one per tenant: they must stay cached on `b`.
    bystanders: Vec<String>,
}

impl Pair {
    async fn status(&self, method: &str, secret: &str, origin: Option<&str>, session: Option<&str>) -> (u16, String) {
        let seen = self.b.request(method, "/api/v1/orders").key(secret).origin(origin).session(session).send().await;
        (seen.status.as_u16(), seen.code().to_owned())
    }

    /// The bystanders are served from `b`'s cache: using them costs no cache miss.
    async fn assert_bystanders_cached(&self, after: &str) {
        let before = self.b.metric("keygate_key_cache_misses_total").await;
        for secret in &self.bystanders {
            assert_eq!(self.status("GET", secret, None, None).await.0, 200, "after {after}");
        }
        assert_eq!(
            self.b.metric("keygate_key_cache_misses_total").await,
            before,
            "after {after}, a key it did not touch left the cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_change_reaches_the_other_instance_and_moves_nothing_else() {
    let _alone = metrics_alone().await;
    let (a, upstream) = spawn_gateway(|_| {}).await;
    let mut routes = gateway_routes(&upstream.url);
    routes[0].forward_meta = true;
    let b = spawn_in(std::sync::Arc::clone(&a.test_store), move |c| c.routes = routes).await;
    let scopes = ["sessions:create", "orders:read", "orders:write"];
    let (_, acme_bystander) = a.orders_key("acme", &scopes).await;
    let (_, globex_bystander) = a.orders_key("globex", &scopes).await;
    let key = |name: &str| json!({ "name": name, "scopes": scopes, "allowedOrigins": [ORIGIN] });
    let (updated, updated_secret) = a.create_key("acme", key("to-update")).await;
    let (revoked, revoked_secret) = a.create_key("acme", key("to-revoke")).await;
    let (narrowed, narrowed_secret) = a.create_key("acme", key("to-narrow")).await;
    let (described, described_secret) = a.create_key("acme", key("to-describe")).await;
    let (rolled, rolled_secret) = a.create_key("acme", key("to-roll")).await;
    let (deleted, deleted_secret) = a.create_key("acme", key("to-delete")).await;
    let mut pair = Pair { a, b, bystanders: vec![acme_bystander.clone(), globex_bystander.clone()] };
    // `b` applies the set-up's own changes first (each drops what it names); then it is warmed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for secret in [
        &updated_secret,
        &revoked_secret,
        &narrowed_secret,
        &described_secret,
        &rolled_secret,
        &deleted_secret,
        &acme_bystander,
        &globex_bystander,
    ] {
        assert_eq!(pair.status("GET", secret, Some(ORIGIN), None).await.0, 200);
    }
    let mut took = Vec::new();

    // Key created.
    let (_, created_secret) = pair.a.create_key("acme", key("created")).await;
    took.push(
        within_a_second("key create", || async { pair.status("GET", &created_secret, None, None).await.0 == 200 })
            .await,
    );
    pair.assert_bystanders_cached("key create").await;

    // Key updated: its scope is gone.
    pair.a.patch_key(updated["id"].as_str().unwrap(), json!({ "scopes": ["sessions:create"] })).await;
    took.push(
        within_a_second("key update", || async {
            pair.status("GET", &updated_secret, None, None).await == (403, "SCOPE_NOT_GRANTED".to_owned())
        })
        .await,
    );
    pair.assert_bystanders_cached("key update").await;

    // Key revoked.
    let path = format!("/admin/v1/keys/{}/revoke", revoked["id"].as_str().unwrap());
    pair.a.admin_request(reqwest::Method::POST, &path, None).await;
    took.push(
        within_a_second("key revoke", || async {
            pair.status("GET", &revoked_secret, None, None).await == (401, "API_KEY_REVOKED".to_owned())
        })
        .await,
    );
    pair.assert_bystanders_cached("key revoke").await;

    // Origin removed from a key's allowlist.
    pair.a.patch_key(narrowed["id"].as_str().unwrap(), json!({ "allowedOrigins": ["https://other.example"] })).await;
    took.push(
        within_a_second("origin removed", || async {
            pair.status("GET", &narrowed_secret, Some(ORIGIN), None).await == (403, "ORIGIN_NOT_ALLOWED".to_owned())
        })
        .await,
    );
    pair.assert_bystanders_cached("origin removed").await;

    // Metadata changed: `b` forwards the new one.
    pair.a.patch_key(described["id"].as_str().unwrap(), json!({ "meta": { "plan": "pro" } })).await;
    took.push(
        within_a_second("meta changed", || async {
            pair.status("GET", &described_secret, None, None).await.0 == 200
                && upstream.last().header("x-keygate-meta") == Some(r#"{"plan":"pro"}"#)
        })
        .await,
    );
    pair.assert_bystanders_cached("meta changed").await;

    // Key rolled with no overlap: the old secret has ended, the new one works.
    let path = format!("/admin/v1/keys/{}/roll", rolled["id"].as_str().unwrap());
    let roll = pair.a.admin_request(reqwest::Method::POST, &path, Some(json!({ "overlapSeconds": 0 }))).await;
    let new_secret = roll.body["data"]["secret"].as_str().unwrap().to_owned();
    took.push(
        within_a_second("key roll", || async {
            pair.status("GET", &rolled_secret, None, None).await == (401, "API_KEY_EXPIRED".to_owned())
                && pair.status("GET", &new_secret, None, None).await.0 == 200
        })
        .await,
    );
    pair.assert_bystanders_cached("key roll").await;

    // Key imported: its existing secret, in no format of keygate's, works on `b`.
    let legacy = "3f9a1c2e-5b7d-4e8f-kong-key-auth";
    let body = json!({ "name": "imported", "scopes": scopes, "importHash": sha256_hex(legacy), "prefix": "3f9a1c" });
    let imported = pair.a.admin_request(reqwest::Method::POST, "/admin/v1/tenants/acme/keys", Some(body)).await;
    assert_eq!(imported.status, 201, "{}", imported.body);
    took.push(within_a_second("key import", || async { pair.status("GET", legacy, None, None).await.0 == 200 }).await);
    pair.assert_bystanders_cached("key import").await;

    // Key deleted: its secret is unknown on `b`.
    let path = format!("/admin/v1/keys/{}", deleted["id"].as_str().unwrap());
    assert_eq!(pair.a.admin_request(reqwest::Method::DELETE, &path, None).await.status, 204);
    took.push(
        within_a_second("key delete", || async {
            pair.status("GET", &deleted_secret, None, None).await == (401, "API_KEY_INVALID".to_owned())
        })
        .await,
    );
    pair.assert_bystanders_cached("key delete").await;

    // Tenant standing and modules: acme's keys leave the cache, globex's stay.
    pair.bystanders = vec![globex_bystander.clone()];
    for (patch, code) in [
        (json!({ "status": "suspended" }), "TENANT_SUSPENDED"),
        (json!({ "status": "active", "subscription": "cancelled" }), "SUBSCRIPTION_CANCELLED"),
        (json!({ "subscription": "past_due" }), "SUBSCRIPTION_PAST_DUE"),
        (json!({ "subscription": "active", "modules": [] }), "MODULE_NOT_ENABLED"),
    ] {
        pair.a.patch_tenant("acme", patch).await;
        took.push(
            within_a_second(code, || async {
                pair.status("GET", &acme_bystander, None, None).await == (403, code.to_owned())
            })
            .await,
        );
        pair.assert_bystanders_cached(code).await;
    }
    pair.a.patch_tenant("acme", json!({ "modules": ["orders"] })).await;

    // Signing key rotated: `b` signs with the new key; retired: `b` refuses the old key's tokens.
    let old_token = pair.b.session(&globex_bystander, ORIGIN).await;
    let rotated = cli(&pair.a.test_store, &["signing-key", "rotate"]);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    took.push(
        within_a_second("signing key rotated", || async {
            let token = pair.b.session(&globex_bystander, ORIGIN).await;
            jwt_part(&token, 0)["kid"] == new_kid.as_str()
        })
        .await,
    );
    let old_kid = jwt_part(&old_token, 0)["kid"].as_str().unwrap().to_owned();
    cli(&pair.a.test_store, &["signing-key", "retire", &old_kid]);
    took.push(
        within_a_second("signing key retired", || async {
            let seen = pair
                .b
                .request("POST", "/api/v1/orders")
                .key(&globex_bystander)
                .origin(ORIGIN)
                .session(&old_token)
                .send()
                .await;
            (seen.status.as_u16(), seen.code()) == (401, "SESSION_INVALID")
        })
        .await,
    );
    pair.assert_bystanders_cached("signing key changes").await;
    eprintln!("propagation times: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflights_on_the_other_instance_follow_every_key_change() {
    let a = spawn_app().await;
    let b = spawn_in(std::sync::Arc::clone(&a.test_store), |_| {}).await;
    a.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let key = |origins: &[&str], expires_at: Option<String>| json!({ "name": "k", "scopes": ["sessions:create"], "allowedOrigins": origins, "expiresAt": expires_at });
    let (exact, _) = a.create_key("acme", key(&["https://shop.example", "https://*.tenant.example"], None)).await;
    let (revoked, _) = a.create_key("acme", key(&["https://gone.example"], None)).await;
    let soon = rfc3339(now_seconds() + 3);
    a.create_key("acme", key(&["https://soon.example:8443"], Some(soon))).await;

    let expect = |cases: Vec<(&'static str, u16)>| {
        let b = &b;
        async move {
            for (origin, status) in &cases {
                if b.preflight_status(origin).await != *status {
                    return false;
                }
            }
            true
        }
    };
    within_a_second("keys created", || {
        expect(vec![
            ("https://shop.example", 204),
            ("https://a.tenant.example", 204),
            ("https://a.b.tenant.example", 204),
            ("https://tenant.example", 403),
            ("https://gone.example", 204),
            ("https://soon.example:8443", 204),
            ("https://soon.example", 403),
            ("https://never.example", 403),
        ])
    })
    .await;

    a.admin_request(reqwest::Method::POST, &format!("/admin/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()), None)
        .await;
    within_a_second("key revoked", || expect(vec![("https://gone.example", 403), ("https://shop.example", 204)])).await;

    a.patch_key(exact["id"].as_str().unwrap(), json!({ "allowedOrigins": ["https://*.tenant.example"] })).await;
    within_a_second("origin removed", || {
        expect(vec![("https://shop.example", 403), ("https://x.tenant.example", 204)])
    })
    .await;

    // Expiry needs no change at all: the index holds each key's expiry.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(b.preflight_status("https://soon.example:8443").await, 403, "the key expired");
    assert_eq!(a.preflight_status("https://soon.example:8443").await, 403);
}
