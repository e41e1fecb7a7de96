//! The order of SPEC §2, step by step, over a store in memory: one browser write request to a
//! route needing a module and a scope, sent with a key, tenant and request that fail every
//! step; each case mends the first failing step and sees the next one answer. Requests go
//! through the layer the way an application serves them ([`App::guard`]), with `oneshot`.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::any;
use http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::Policy;
use crate::app::App;
use crate::store::testing::memory_config;

const ORIGIN: &str = "https://app.example";
const DAY: u64 = 86_400;

struct Harness {
    app: App,
    router: Router,
}

impl Harness {
    async fn start() -> Self {
        let app = App::build(memory_config()).await.unwrap();
        let write = app.require(Policy::scope("orders:write").unwrap().with_module("orders"));
        let routes = Router::new().route("/api/v1/orders", any(|| async { "reached" }).layer(write));
        let router = app.guard(routes).unwrap();
        Self { app, router }
    }

    /// `(status, error code or body)` of one request.
    async fn send(&self, path: &str, key: Option<&str>, origin: &str, session: Option<&str>) -> (StatusCode, String) {
        let mut request = Request::post(path).header("origin", origin);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(token) = session {
            request = request.header("x-session-token", token);
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) if json["error"]["code"].is_string() => json["error"]["code"].as_str().unwrap().to_owned(),
            Ok(json) => json.to_string(),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        };
        (status, body)
    }

    async fn order(&self, key: Option<&str>, origin: &str, session: Option<&str>) -> (StatusCode, String) {
        self.send("/api/v1/orders", key, origin, session).await
    }

    /// A new key of `acme`: its id and secret.
    async fn key(&self, body: Value) -> (String, String) {
        let created = self.app.admin.create_key("test", "acme", body.to_string().as_bytes()).await.unwrap();
        (created.key.key.id.clone(), created.secret.clone().expect("a made secret"))
    }

    async fn tenant(&self, change: Value) {
        self.app.admin.update_tenant("test", "acme", change.to_string().as_bytes()).await.unwrap();
    }
}

fn error(status: u16, code: &str) -> (StatusCode, String) {
    (StatusCode::from_u16(status).unwrap(), code.to_owned())
}

#[tokio::test]
async fn the_first_failing_step_answers_in_the_order_of_the_contract() {
    let h = Harness::start().await;
    // A tenant failing steps 5 and 8: suspended, cancelled, without the module.
    let tenant = json!({ "id": "acme", "name": "Acme", "status": "suspended", "subscription": "cancelled" });
    h.app.admin.create_tenant("test", tenant.to_string().as_bytes()).await.unwrap();
    // Keys failing step 9 (no `orders:write`); one of them also step 4 after one request.
    let key = |limit: u64| {
        json!({ "name": "web", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN],
                "rateLimit": { "limit": limit, "windowSeconds": DAY } })
    };

    // 1, 2: no key, then a credential that is no key of ours.
    assert_eq!(h.order(None, ORIGIN, None).await, error(401, "API_KEY_REQUIRED"));
    assert_eq!(h.order(Some("kg_notakey"), ORIGIN, None).await, error(401, "API_KEY_INVALID"));

    // 3 before everything the tenant and request get wrong.
    let (id, revoked) = h.key(key(1000)).await;
    h.app.admin.revoke_key("test", &id).await.unwrap();
    assert_eq!(h.order(Some(&revoked), "https://evil.example", None).await, error(401, "API_KEY_REVOKED"));

    // 4 before 5: a request that passed 1–3 counts, even one the tenant's standing refuses.
    let (_, limited) = h.key(key(1)).await;
    assert_eq!(h.order(Some(&limited), ORIGIN, None).await, error(403, "TENANT_SUSPENDED"));
    assert_eq!(h.order(Some(&limited), ORIGIN, None).await, error(429, "RATE_LIMITED"));

    // 5, in its own order: status, then cancelled, then past due.
    let (id, secret) = h.key(key(1000)).await;
    assert_eq!(h.order(Some(&secret), "https://evil.example", None).await, error(403, "TENANT_SUSPENDED"));
    h.tenant(json!({ "status": "active" })).await;
    assert_eq!(h.order(Some(&secret), "https://evil.example", None).await, error(403, "SUBSCRIPTION_CANCELLED"));
    h.tenant(json!({ "subscription": "past_due" })).await;
    assert_eq!(h.order(Some(&secret), "https://evil.example", None).await, error(403, "SUBSCRIPTION_PAST_DUE"));
    h.tenant(json!({ "subscription": "trialing" })).await;

    // 6, then 7: the origin before the session a write needs; a presented token is checked.
    assert_eq!(h.order(Some(&secret), "https://evil.example", None).await, error(403, "ORIGIN_NOT_ALLOWED"));
    assert_eq!(h.order(Some(&secret), ORIGIN, None).await, error(401, "SESSION_REQUIRED"));
    assert_eq!(h.order(Some(&secret), ORIGIN, Some("x.y.z")).await, error(401, "SESSION_INVALID"));

    // 8 before 9, with a session minted by the public routes App::guard mounts.
    let (status, minted) = h.send("/api/v1/sessions", Some(&secret), ORIGIN, None).await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let minted: Value = serde_json::from_str(&minted).unwrap();
    let token = minted["data"]["sessionToken"].as_str().unwrap();
    assert_eq!(h.order(Some(&secret), ORIGIN, Some(token)).await, error(403, "MODULE_NOT_ENABLED"));
    h.tenant(json!({ "modules": ["orders"] })).await;
    assert_eq!(h.order(Some(&secret), ORIGIN, Some(token)).await, error(403, "SCOPE_NOT_GRANTED"));

    // Every step passed: the handler answers.
    let scopes = json!({ "scopes": ["sessions:create", "orders:write"] });
    h.app.admin.update_key("test", &id, scopes.to_string().as_bytes()).await.unwrap();
    assert_eq!(h.order(Some(&secret), ORIGIN, Some(token)).await, (StatusCode::OK, "reached".to_owned()));
}
