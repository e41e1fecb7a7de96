//! CORS, preflight, rate limiting and malformed input on the public listener.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::json;

const EXPOSED: &str = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-Id";

#[tokio::test]
async fn preflight_from_a_known_origin_is_204_with_cors_headers() {
    let app = spawn_app().await;
    app.browser_key("acme", &["sessions:create"]).await;
    for path in ["/api/v1/sessions", "/api/v1/no-route-here"] {
        let seen = app.preflight(path, "HTTP://localhost:3000", "POST").await;
        assert_eq!(seen.status, 204, "{path}");
        assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
        assert_eq!(seen.header("vary"), Some("Origin"));
        let methods = seen.header("access-control-allow-methods");
        assert_eq!(methods, if path == "/api/v1/sessions" { Some("POST") } else { None }, "{path}");
        assert_eq!(
            seen.header("access-control-allow-headers"),
            Some("Authorization, Content-Type, X-Session-Token, X-Request-Id")
        );
        assert!(seen.header("access-control-max-age").is_some());
        assert!(seen.header("access-control-allow-credentials").is_none());
    }
}

#[tokio::test]
async fn preflight_from_an_unknown_origin_is_403_without_cors_headers() {
    let app = spawn_app().await;
    let (key, _) = app.browser_key("acme", &["sessions:create"]).await;
    for origin in ["https://evil.example", "null", "http://localhost:3000/"] {
        let seen = app.preflight("/api/v1/sessions", origin, "POST").await;
        seen.assert_error(403, "ORIGIN_NOT_ALLOWED");
        assert!(!seen.has_cors(), "{origin}");
    }
    // Only keys that can still be used count: a revoked key's origins no longer preflight.
    app.admin_request(Method::POST, &format!("/admin/v1/keys/{}/revoke", key["id"].as_str().unwrap()), None).await;
    app.preflight("/api/v1/sessions", ORIGIN, "POST").await.assert_error(403, "ORIGIN_NOT_ALLOWED");
}

#[tokio::test]
async fn cors_headers_appear_exactly_when_the_origin_is_on_the_keys_allowlist() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let (_, other) = app.browser_key("globex", &["orders:read"]).await;

    let ok = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(ok.status, 201);
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(ok.header("vary"), Some("Origin"));
    assert_eq!(ok.header("access-control-expose-headers"), Some(EXPOSED));
    assert!(ok.header("access-control-allow-credentials").is_none());

    let scope = app.mint(&other, Some(ORIGIN)).await;
    scope.assert_error(403, "SCOPE_NOT_GRANTED");
    assert_eq!(scope.header("access-control-allow-origin"), Some(ORIGIN));

    let elsewhere = app.mint(&secret, Some("https://evil.example")).await;
    elsewhere.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(!elsewhere.has_cors());

    let server = app.mint(&secret, None).await;
    assert!(!server.has_cors());
}

#[tokio::test]
async fn wildcard_allowlist_entries_match_subdomains_only() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app
        .create_key(
            "acme",
            json!({ "name": "w", "scopes": ["sessions:create"], "allowedOrigins": ["https://*.example.com", "https://Example.com:443/"] }),
        )
        .await;
    assert_eq!(key["allowedOrigins"], json!(["https://*.example.com", "https://example.com"]));
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://a.b.example.com", true),
        ("https://example.com", true),
        ("https://evil-example.com", false),
        ("https://example.com.evil.net", false),
        ("http://app.example.com", false),
    ] {
        let seen = app.mint(&secret, Some(origin)).await;
        assert_eq!(seen.status == 201, allowed, "{origin}: {}", seen.body);
        assert_eq!(seen.has_cors(), allowed, "{origin}");
    }
}

fn expected_reset(window: u64) -> i64 {
    let now = now_seconds();
    now - now.rem_euclid(window as i64) + window as i64
}

#[tokio::test]
async fn limit_n_gives_n_successes_then_429_with_exact_headers() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 3).await;
    let reset = expected_reset(DAY).to_string();
    for remaining in ["2", "1", "0"] {
        let seen = app.mint(&secret, Some(ORIGIN)).await;
        assert_eq!(seen.status, 201);
        assert_eq!(seen.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(seen.header("x-ratelimit-remaining"), Some(remaining));
        assert_eq!(seen.header("x-ratelimit-reset"), Some(reset.as_str()));
        assert!(seen.header("retry-after").is_none());
    }
    for _ in 0..2 {
        let seen = app.mint(&secret, Some(ORIGIN)).await;
        seen.assert_error(429, "RATE_LIMITED");
        assert_eq!(seen.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(seen.header("x-ratelimit-remaining"), Some("0"));
        assert_eq!(seen.header("x-ratelimit-reset"), Some(reset.as_str()));
        let retry_after: i64 = seen.header("retry-after").unwrap().parse().unwrap();
        let until_reset = expected_reset(DAY) - now_seconds();
        assert!(retry_after >= 1 && (retry_after - until_reset).abs() <= 1, "{retry_after} vs {until_reset}");
        assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN), "a 429 is readable by the page");
    }
}

#[tokio::test]
async fn every_response_after_step_3_carries_the_rate_limit_headers() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["orders:read"]).await;
    let mut remaining = 1000;
    for origin in [None, Some("https://evil.example"), Some(ORIGIN)] {
        let seen = app.mint(&secret, origin).await;
        assert_eq!(seen.status, 403);
        remaining -= 1;
        assert_eq!(seen.header("x-ratelimit-remaining"), Some(remaining.to_string().as_str()), "{origin:?}");
    }
}

#[tokio::test]
async fn the_limit_falls_back_from_key_to_tenant_to_global() {
    let app = spawn_with(|c| c.rate_limit.limit = 7).await;
    app.create_tenant(json!({ "id": "plain", "name": "Plain" })).await;
    let (_, global) = app.create_key("plain", json!({ "name": "k", "scopes": [], "allowedOrigins": [ORIGIN] })).await;
    assert_eq!(app.mint(&global, Some(ORIGIN)).await.header("x-ratelimit-limit"), Some("7"));

    app.create_tenant(json!({ "id": "big", "name": "Big", "rateLimit": { "limit": 50, "windowSeconds": DAY } })).await;
    let (_, tenant) = app.create_key("big", json!({ "name": "k", "scopes": [], "allowedOrigins": [ORIGIN] })).await;
    let seen = app.mint(&tenant, Some(ORIGIN)).await;
    assert_eq!(seen.header("x-ratelimit-limit"), Some("50"));
    assert_eq!(seen.header("x-ratelimit-reset"), Some(expected_reset(DAY).to_string().as_str()));
}

#[tokio::test]
async fn a_limit_raised_by_the_admin_applies_mid_window() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.limited_key("acme", &["sessions:create"], 2).await;
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    app.mint(&secret, Some(ORIGIN)).await.assert_error(429, "RATE_LIMITED");

    app.patch_key(key["id"].as_str().unwrap(), json!({ "rateLimit": { "limit": 5, "windowSeconds": DAY } })).await;
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(seen.status, 201, "{}", seen.body);
    assert_eq!(seen.header("x-ratelimit-limit"), Some("5"));
    assert_eq!(seen.header("x-ratelimit-remaining"), Some("2"), "the 429 did not count");
}

#[tokio::test]
async fn bearer_spelling_variants_share_one_bucket() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 3).await;
    for (scheme, remaining) in [("Bearer", "2"), ("bearer", "1"), ("BEARER", "0")] {
        let auth = format!("{scheme} {secret}");
        let seen = app.mint_with(&[("authorization", auth.as_bytes()), ("origin", ORIGIN.as_bytes())]).await;
        assert_eq!(seen.status, 201, "{scheme}");
        assert_eq!(seen.header("x-ratelimit-remaining"), Some(remaining));
    }
    let auth = format!("bEaReR {secret}");
    let seen = app.mint_with(&[("authorization", auth.as_bytes()), ("origin", ORIGIN.as_bytes())]).await;
    seen.assert_error(429, "RATE_LIMITED");
}

#[tokio::test]
async fn malformed_headers_get_a_4xx_and_never_a_panic() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let auth = format!("Bearer {secret}");
    let origin = ("origin", ORIGIN.as_bytes());

    app.mint_with(&[("authorization", b"Bearer \xff\xfe\x80"), origin]).await.assert_error(401, "API_KEY_INVALID");
    let seen = app.mint_with(&[("authorization", auth.as_bytes()), ("origin", b"http://local\xffhost")]).await;
    seen.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(!seen.has_cors());

    let twice_auth =
        app.mint_with(&[("authorization", auth.as_bytes()), ("authorization", auth.as_bytes()), origin]).await;
    twice_auth.assert_error(401, "API_KEY_INVALID");
    let twice_origin = app.mint_with(&[("authorization", auth.as_bytes()), origin, origin]).await;
    twice_origin.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(!twice_origin.has_cors());

    let long_key = format!("Bearer kg_{}", "A".repeat(16 * 1024));
    app.mint_with(&[("authorization", long_key.as_bytes()), origin]).await.assert_error(401, "API_KEY_INVALID");
    let long_origin = format!("https://{}.example.com", "a".repeat(16 * 1024));
    app.mint_with(&[("authorization", auth.as_bytes()), ("origin", long_origin.as_bytes())])
        .await
        .assert_error(403, "ORIGIN_NOT_ALLOWED");

    // Past the server's header-size limit the answer is still a 4xx, and the server lives on.
    let huge = "a".repeat(1024 * 1024);
    let response = app.request("POST", "/api/v1/sessions").header("x-filler", &huge).response().await;
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
}
