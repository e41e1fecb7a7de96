//! `POST /api/v1/sessions` against a real keygate: every code of steps 1–6 and 9, their
//! order, and the token it mints.

use crate::common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

#[tokio::test]
async fn an_allowed_browser_origin_gets_a_session_token() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let before = now_seconds();
    let seen = app.mint(&secret, Some("HTTP://LOCALHOST:3000")).await;

    assert_eq!(seen.status, 201, "{}", seen.body);
    assert_eq!(seen.header("cache-control"), Some("no-store"));
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let data = seen.body["data"].as_object().expect("data object");
    assert_eq!(seen.body.as_object().unwrap().len(), 1);
    assert_eq!(data.keys().collect::<Vec<_>>(), ["sessionToken", "expiresAt"]);

    let token = data["sessionToken"].as_str().unwrap();
    let header = jwt_part(token, 0);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].as_str().is_some_and(|kid| !kid.is_empty()));

    let claims = jwt_part(token, 1);
    assert_eq!(claims["iss"], "keygate");
    assert_eq!(claims["aud"], "keygate:session");
    assert_eq!(claims["sub"], key["id"]);
    assert_eq!(claims["tid"], "acme");
    assert_eq!(claims["origin"], ORIGIN, "the origin claim is normalised");
    assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() >= 16));
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert!((before..=now_seconds()).contains(&iat));
    assert_eq!(exp - iat, 3600);
    assert_eq!(data["expiresAt"], rfc3339(exp), "RFC 3339, UTC, Z, whole seconds");
    assert!(data["expiresAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn a_request_body_is_ignored() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let response = app
        .request("POST", "/api/v1/sessions")
        .key(&secret)
        .header("origin", ORIGIN)
        .body("{not json")
        .response()
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn the_lifetime_is_capped_by_the_keys_expiry() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let expires = now_seconds() + 600;
    let (_, secret) = app
        .create_key(
            "acme",
            json!({ "name": "short", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN], "expiresAt": rfc3339(expires) }),
        )
        .await;
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(seen.status, 201);
    assert_eq!(seen.body["data"]["expiresAt"], rfc3339(expires));
    assert_eq!(jwt_part(seen.body["data"]["sessionToken"].as_str().unwrap(), 1)["exp"], expires);
}

#[tokio::test]
async fn eddsa_tokens_verify_against_the_served_jwks() {
    let app = spawn_with(|c| c.sessions.algorithm = keygate::config::SessionAlgorithm::EdDSA).await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    assert_eq!(seen.status, 201);
    let token = seen.body["data"]["sessionToken"].as_str().unwrap();
    assert_eq!(jwt_part(token, 0)["alg"], "EdDSA");

    let jwks_seen = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks_seen.status, 200);
    let jwks: JwkSet = serde_json::from_value(jwks_seen.body.clone()).expect("a JWKS");
    let kid = jwt_part(token, 0)["kid"].as_str().unwrap().to_owned();
    let jwk = jwks.find(&kid).expect("the signing key is published");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["keygate:session"]);
    validation.set_issuer(&["keygate"]);
    let verified = jsonwebtoken::decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies with the published key");
    assert_eq!(verified.claims["sub"], key["id"]);

    let mut tampered = token.to_owned();
    tampered.insert(token.find('.').unwrap() + 2, 'x');
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(&tampered, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .is_err()
    );
}

#[tokio::test]
async fn hs256_publishes_no_keys() {
    let app = spawn_app().await;
    let seen = app.get("/.well-known/jwks.json").await;
    assert_eq!((seen.status.as_u16(), seen.body.clone()), (200, json!({ "keys": [] })));
}

#[tokio::test]
async fn step_1_missing_bearer_key_is_api_key_required() {
    let app = spawn_app().await;
    let origin: (&str, &[u8]) = ("origin", ORIGIN.as_bytes());
    for headers in [
        vec![origin],
        vec![origin, ("authorization", b"Basic dXNlcjpwYXNz")],
        vec![origin, ("authorization", b"Bearer")],
        vec![origin, ("authorization", b"Bearer   ")],
    ] {
        let seen = app.mint_with(&headers).await;
        seen.assert_error(401, "API_KEY_REQUIRED");
        assert!(!seen.has_cors());
        assert!(seen.header("x-ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn step_2_malformed_or_unknown_keys_are_api_key_invalid() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let mut typo = secret.clone().into_bytes();
    typo[8] = if typo[8] == b'a' { b'b' } else { b'a' };
    let unknown = keygate::secret::generate_secret("kg").secret;
    let other_prefix = keygate::secret::generate_secret("zz").secret;
    for candidate in ["garbage".to_owned(), String::from_utf8(typo).unwrap(), unknown, other_prefix] {
        let seen = app.mint(&candidate, Some(ORIGIN)).await;
        seen.assert_error(401, "API_KEY_INVALID");
        assert!(!seen.has_cors(), "no CORS before the key is known");
        assert!(seen.header("x-ratelimit-limit").is_none());
        assert!(!seen.body.to_string().contains(&candidate), "the message never echoes the key");
    }
}

#[tokio::test]
async fn step_3_revoked_and_expired_keys_are_refused() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let id = key["id"].as_str().unwrap();
    let (expired, expired_secret) = app
        .create_key(
            "acme",
            json!({ "name": "old", "scopes": ["sessions:create"], "allowedOrigins": [ORIGIN], "expiresAt": rfc3339(now_seconds() - 1) }),
        )
        .await;
    assert!(expired["expiresAt"].is_string());
    app.mint(&expired_secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_EXPIRED");

    let seen = app.admin_request(reqwest::Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert_eq!(seen.status, 200);
    app.mint(&secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_REVOKED");
}

#[tokio::test]
async fn a_revoked_key_from_a_disallowed_origin_is_api_key_revoked() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    app.admin_request(reqwest::Method::POST, &format!("/admin/v1/keys/{}/revoke", key["id"].as_str().unwrap()), None)
        .await;
    app.mint(&secret, Some("https://evil.example")).await.assert_error(401, "API_KEY_REVOKED");
}

#[tokio::test]
async fn step_5_tenant_standing_in_order() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let cases = [
        (json!({ "status": "suspended", "subscription": "cancelled" }), Some("TENANT_SUSPENDED")),
        (json!({ "status": "active", "subscription": "cancelled" }), Some("SUBSCRIPTION_CANCELLED")),
        (json!({ "subscription": "past_due" }), Some("SUBSCRIPTION_PAST_DUE")),
        (json!({ "subscription": "trialing" }), None),
        (json!({ "subscription": "active" }), None),
    ];
    for (patch, code) in cases {
        app.patch_tenant("acme", patch.clone()).await;
        let seen = app.mint(&secret, Some(ORIGIN)).await;
        match code {
            Some(code) => seen.assert_error(403, code),
            None => assert_eq!(seen.status, 201, "{patch}: {}", seen.body),
        }
    }
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_before_the_origin_is_checked() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    app.patch_tenant("acme", json!({ "status": "suspended" })).await;
    app.mint(&secret, Some("https://evil.example")).await.assert_error(403, "TENANT_SUSPENDED");
}

#[tokio::test]
async fn a_rate_limited_key_of_a_suspended_tenant_gets_429() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "status": "suspended" })).await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 1).await;
    app.mint(&secret, Some(ORIGIN)).await.assert_error(403, "TENANT_SUSPENDED");
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    seen.assert_error(429, "RATE_LIMITED");
    assert!(seen.header("retry-after").is_some());
}

#[tokio::test]
async fn step_6_origins() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let seen = app.mint(&secret, None).await;
    seen.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert!(seen.body["error"]["message"].as_str().unwrap().contains("browser origin is required"));
    for origin in ["https://evil.example", "null", "http://localhost:3000/", "http://localhost:3001"] {
        let seen = app.mint(&secret, Some(origin)).await;
        seen.assert_error(403, "ORIGIN_NOT_ALLOWED");
        assert!(!seen.has_cors(), "{origin}");
    }
}

#[tokio::test]
async fn a_disallowed_origin_is_refused_before_the_scope_is_checked() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["orders:read"]).await;
    app.mint(&secret, Some("https://evil.example")).await.assert_error(403, "ORIGIN_NOT_ALLOWED");
    let seen = app.mint(&secret, Some(ORIGIN)).await;
    seen.assert_error(403, "SCOPE_NOT_GRANTED");
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN), "readable by the allowed page");
}

#[tokio::test]
async fn step_9_wildcard_scopes_grant_sessions_create() {
    let app = spawn_app().await;
    let (_, all) = app.browser_key("acme", &["*"]).await;
    assert_eq!(app.mint(&all, Some(ORIGIN)).await.status, 201);
    let (_, family) = app.browser_key("globex", &["sessions:*"]).await;
    assert_eq!(app.mint(&family, Some(ORIGIN)).await.status, 201);
    let (_, none) = app.browser_key("initech", &[]).await;
    app.mint(&none, Some(ORIGIN)).await.assert_error(403, "SCOPE_NOT_GRANTED");
}

#[tokio::test]
async fn other_methods_and_paths_are_405_and_404_without_cors() {
    let app = spawn_app().await;
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let url = format!("{}/api/v1/sessions", app.public);
    for method in [reqwest::Method::GET, reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::OPTIONS] {
        let response = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&secret)
            .header("origin", ORIGIN)
            .send()
            .await
            .unwrap();
        let seen = Seen::from(response).await;
        seen.assert_error(405, "METHOD_NOT_ALLOWED");
        assert_eq!(seen.header("allow"), Some("POST"), "{method}");
        assert!(!seen.has_cors(), "{method}");
    }
    for path in ["/healthz", "/readyz", "/.well-known/jwks.json", "/openapi.json"] {
        let seen = app.request("POST", path).send().await;
        seen.assert_error(405, "METHOD_NOT_ALLOWED");
        assert_eq!(seen.header("allow"), Some("GET, HEAD"), "{path}");
    }
    let seen = app.get("/api/v1/nothing-here").await;
    seen.assert_error(404, "NOT_FOUND");
    let seen = app.get("/admin/v1/tenants").await;
    seen.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let health = app.get("/healthz").await;
    assert_eq!((health.status.as_u16(), health.body.clone()), (200, json!({ "data": { "status": "ok" } })));
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert!(ready.header("x-request-id").is_some_and(|id| id.len() >= 16));
}

/// Instances started at once on a fresh store make one signing key between them, for each
/// algorithm (the first key is generated under the store's write lock), on stores of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_started_together_on_a_fresh_store_make_one_first_signing_key() {
    use std::sync::Arc;
    for algorithm in [keygate::config::SessionAlgorithm::HS256, keygate::config::SessionAlgorithm::EdDSA] {
        for _ in 0..3 {
            let store = TestStore::new().await;
            let start = |store: &Arc<TestStore>| spawn_in(Arc::clone(store), move |c| c.sessions.algorithm = algorithm);
            let (first, second) = tokio::join!(start(&store), start(&store));
            let listed = first.admin_request(reqwest::Method::GET, "/admin/v1/signing-keys", None).await;
            let keys = listed.body["data"].as_array().unwrap();
            assert_eq!(keys.len(), 1, "{algorithm:?}: {}", listed.body);
            // Both sign with it.
            let (_, secret) = first.browser_key("acme", &["sessions:create"]).await;
            for instance in [&first, &second] {
                let minted = instance.mint(&secret, Some(ORIGIN)).await;
                let token = minted.body["data"]["sessionToken"].as_str().unwrap();
                assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid.as_deref(), keys[0]["kid"].as_str());
            }
        }
    }
}

/// A fleet moved from HS256 to EdDSA (docs/operations.md): each algorithm has its signing key,
/// each signing for its own; an EdDSA instance may then retire the HS256 key, which an HS256
/// instance may not (it signs there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_moved_to_eddsa_retires_its_hs256_key() {
    use reqwest::Method;
    use std::sync::Arc;
    let store = TestStore::new().await;
    let hs256 = spawn_in(Arc::clone(&store), |_| {}).await;
    let eddsa = spawn_in(Arc::clone(&store), |c| c.sessions.algorithm = keygate::config::SessionAlgorithm::EdDSA).await;
    let listed = eddsa.admin_request(Method::GET, "/admin/v1/signing-keys", None).await;
    let keys = listed.body["data"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{}", listed.body);
    assert!(keys.iter().all(|key| key["signing"] == true), "one signing key per algorithm: {}", listed.body);
    let old = keys.iter().find(|key| key["algorithm"] == "HS256").unwrap()["kid"].as_str().unwrap().to_owned();
    let retire = format!("/admin/v1/signing-keys/{old}/retire");
    hs256.admin_request(Method::POST, &retire, None).await.assert_error(409, "CONFLICT");
    let retired = eddsa.admin_request(Method::POST, &retire, None).await;
    assert_eq!(retired.status, 200, "{}", retired.body);
    assert!(retired.body["data"]["retiredAt"].is_string(), "{}", retired.body);
}
