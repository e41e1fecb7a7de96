//! The tower layer in an axum application (`examples/orders_app`): the same pipeline
//! assertions as the gateway, for the example's routes, against the example's own router.

use crate::common;

#[path = "../../examples/orders_app/app.rs"]
mod orders_app;

use common::*;
use keygate::app::App;
use keygate::config::Config;
use serde_json::json;

struct Example {
    /// Reuses the harness's HTTP helpers; its admin URL is unused (admin goes through `keygate.admin`).
    http: TestApp,
    keygate: App,
    orders: orders_app::Orders,
    _background: keygate::app::Background,
}

async fn start() -> Example {
    let store = TestStore::new().await;
    let mut config = Config::default();
    config.store.url = store.url.parse().unwrap();
    let keygate = App::build(config.clone()).await.unwrap();
    let background = keygate.start_background();
    let orders = orders_app::Orders::default();
    let router = orders_app::router(&keygate, orders.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    // An admin-only keygate instance on the same store, for the harness's admin helpers.
    let mut http = spawn_in(store, |_| {}).await;
    http.public = public;
    Example { http, keygate, orders, _background: background }
}

#[tokio::test]
async fn allowed_requests_reach_the_handler_with_the_principal() {
    let ex = start().await;
    let (key, secret) = ex.http.orders_key("acme", &["sessions:create", "orders:read", "orders:write"]).await;
    let seen = ex.http.request("POST", "/api/v1/orders").key(&secret).json(&json!({ "item": "tea" })).send().await;
    assert_eq!(seen.status, 201, "{}", seen.body);
    assert_eq!(seen.body["data"]["createdBy"], key["id"]);
    assert_eq!(seen.body["data"]["channel"], "server");
    assert_eq!(seen.header("x-ratelimit-limit"), Some("1000"));

    let listed = ex.http.request("GET", "/api/v1/orders").key(&secret).origin(ORIGIN).send().await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["data"][0]["item"], "tea");
    assert_eq!(listed.header("access-control-allow-origin"), Some(ORIGIN));

    // Another tenant sees only its own orders.
    let (_, other) = ex.http.orders_key("globex", &["orders:read"]).await;
    assert_eq!(ex.http.request("GET", "/api/v1/orders").key(&other).send().await.body["data"], json!([]));
}

#[tokio::test]
async fn the_pipeline_refuses_before_the_handler_runs() {
    let ex = start().await;
    let (key, secret) = ex.http.orders_key("acme", &["sessions:create", "orders:read", "orders:write"]).await;
    let (_, reader) = ex.http.orders_key("globex", &["orders:read"]).await;
    ex.http.create_tenant(json!({ "id": "nomods", "name": "No modules" })).await;
    let (_, no_module) = ex.http.create_key("nomods", json!({ "name": "n", "scopes": ["*"] })).await;
    let (_, limited) = ex
        .http
        .create_key("acme", json!({ "name": "l", "scopes": ["*"], "rateLimit": { "limit": 1, "windowSeconds": DAY } }))
        .await;

    ex.http.request("POST", "/api/v1/orders").key("").send().await.assert_error(401, "API_KEY_REQUIRED");
    ex.http.request("POST", "/api/v1/orders").key("kg_bad").send().await.assert_error(401, "API_KEY_INVALID");
    ex.http.request("POST", "/api/v1/orders").key(&reader).send().await.assert_error(403, "SCOPE_NOT_GRANTED");
    ex.http.request("GET", "/api/v1/orders").key(&no_module).send().await.assert_error(403, "MODULE_NOT_ENABLED");
    let seen = ex.http.request("POST", "/api/v1/orders").key(&secret).origin("https://evil.example").send().await;
    seen.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(!seen.has_cors());
    let seen = ex.http.request("DELETE", "/api/v1/orders/1").key(&secret).origin(ORIGIN).send().await;
    seen.assert_error(401, "SESSION_REQUIRED");
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
    ex.http
        .request("DELETE", "/api/v1/orders/1")
        .key(&secret)
        .origin(ORIGIN)
        .session("x.y.z")
        .send()
        .await
        .assert_error(401, "SESSION_INVALID");
    ex.http.request("GET", "/api/v1/orders").key(&limited).send().await;
    let seen = ex.http.request("GET", "/api/v1/orders").key(&limited).send().await;
    seen.assert_error(429, "RATE_LIMITED");
    assert!(seen.header("retry-after").is_some());

    ex.keygate.admin.revoke_key("test", key["id"].as_str().unwrap()).await.unwrap();
    ex.http.request("GET", "/api/v1/orders").key(&secret).send().await.assert_error(401, "API_KEY_REVOKED");
    assert_eq!(ex.orders.count(), 0, "no refused request reached a handler");
}

#[tokio::test]
async fn a_browser_mints_a_session_from_the_mounted_public_routes_and_writes() {
    let ex = start().await;
    let (_, secret) = ex.http.orders_key("acme", &["sessions:create", "orders:write"]).await;
    let token = ex.http.session(&secret, ORIGIN).await;
    let seen = ex
        .http
        .request("POST", "/api/v1/orders")
        .key(&secret)
        .origin(ORIGIN)
        .session(&token)
        .json(&json!({ "item": "coffee" }))
        .send()
        .await;
    assert_eq!(seen.status, 201, "{}", seen.body);
    assert_eq!(seen.body["data"]["channel"], "browser");
    assert_eq!(ex.orders.count(), 1);
    assert_eq!(ex.http.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn paths_are_put_in_normal_form_before_the_application_routes() {
    let ex = start().await;
    let (_, secret) = ex.http.orders_key("acme", &["orders:read", "orders:write"]).await;
    let post = format!(
        "POST /api/v1/%6Frders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n\
         Content-Type: application/json\r\nContent-Length: 14\r\nConnection: close\r\n\r\n{{\"item\":\"tea\"}}"
    );
    let answer = raw::exchange(&ex.http.public, &post).await;
    assert_eq!(raw::status(&answer), 201, "routed and judged as /api/v1/orders: {answer}");
    assert_eq!(ex.orders.count(), 1);
    for target in ["/api/v1/orders;x", "/api/v1/orders/%2e%2e/x", "/api/v1/orders/1%2f2", "/api/v1//orders"] {
        let answer = raw::get(&ex.http.public, target, &secret, "").await;
        assert_eq!(raw::status(&answer), 400, "{target}: {answer}");
        assert!(answer.contains("VALIDATION_ERROR"), "{target}");
    }
}

#[tokio::test]
async fn a_require_key_route_refuses_a_path_nobody_normalised() {
    use axum::routing::get;
    use tower::ServiceExt;

    let ex = start().await;
    let (_, secret) = ex.http.orders_key("acme", &["orders:read"]).await;
    // An application that forgot `normalize_paths`: its `{id}` route would see `internal`.
    let read = ex.keygate.require(keygate::pipeline::Policy::scope("orders:read").unwrap());
    let router = axum::Router::new().route("/orders/{id}", get(|| async { "handled" }).layer(read));
    let request = |target: &str| {
        axum::http::Request::get(target)
            .header("authorization", format!("Bearer {secret}"))
            .body(axum::body::Body::empty())
    };
    let refused = router.clone().oneshot(request("/orders/%69nternal").unwrap()).await.unwrap();
    assert_eq!(refused.status(), 400);
    let allowed = router.oneshot(request("/orders/7").unwrap()).await.unwrap();
    assert_eq!(allowed.status(), 200);
}

#[tokio::test]
async fn preflights_on_the_applications_own_routes_are_answered_from_the_allowlists() {
    let ex = start().await;
    ex.http.orders_key("acme", &["orders:write"]).await;
    // The example's keygate learns of the new key (made through the other instance) from the
    // change feed.
    let mut seen = ex.http.preflight("/api/v1/orders/7", ORIGIN, "DELETE").await;
    for _ in 0..50 {
        if seen.status == 204 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        seen = ex.http.preflight("/api/v1/orders/7", ORIGIN, "DELETE").await;
    }
    assert_eq!(seen.status, 204, "{}", seen.body);
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(seen.header("access-control-allow-methods"), Some("DELETE"));
    let refused = ex.http.preflight("/api/v1/orders", "https://evil.example", "POST").await;
    refused.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(!refused.has_cors());
    assert_eq!(ex.orders.count(), 0, "no handler ran");
}
