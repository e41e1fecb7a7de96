//! The admin API (SPEC §8) against a real keygate.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn paths(seen: &Seen) -> Vec<String> {
    seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_admin_token_guards_every_route() {
    let app = spawn_app().await;
    for path in ["/admin/v1/tenants", "/admin/v1/keys/key_x", "/nowhere", "/metrics"] {
        for auth in [None, Some("wrong-token"), Some("")] {
            let mut request = app.client.get(format!("{}{path}", app.admin));
            if let Some(token) = auth {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let seen = Seen::from(request.send().await.unwrap()).await;
            seen.assert_error(401, "ADMIN_TOKEN_INVALID");
        }
    }
    let seen = app.admin_request(Method::GET, "/nowhere", None).await;
    seen.assert_error(404, "NOT_FOUND");
    let seen = app.admin_request(Method::DELETE, "/admin/v1/tenants", None).await;
    seen.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(seen.header("allow"), Some("POST,GET,HEAD"), "axum lists the path's methods");
    // A path parameter that is not UTF-8 is refused by axum itself: still the envelope.
    let seen = app.admin_request(Method::GET, "/admin/v1/keys/%FF", None).await;
    seen.assert_error(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_new_tenant_gets_defaults_and_a_generated_id() {
    let app = spawn_app().await;
    let tenant = app.create_tenant(json!({ "name": "Acme" })).await;
    assert!(tenant["id"].as_str().unwrap().starts_with("ten_"));
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["subscription"], "active");
    assert_eq!(tenant["modules"], json!([]));
    assert_eq!(tenant["rateLimit"], Value::Null);
    assert!(keygate::time::parse_rfc3339(tenant["createdAt"].as_str().unwrap()).is_some());
    let fetched =
        app.admin_request(Method::GET, &format!("/admin/v1/tenants/{}", tenant["id"].as_str().unwrap()), None).await;
    assert_eq!(fetched.body["data"], tenant);
}

#[tokio::test]
async fn each_bad_field_gets_its_own_detail() {
    let app = spawn_app().await;
    let body = json!({
        "id": "-bad", "name": "", "status": "paused", "subscription": "free",
        "modules": ["ok", 7], "rateLimit": { "limit": 0, "windowSeconds": 60 }, "plan": "gold",
    });
    let seen = app.admin_request(Method::POST, "/admin/v1/tenants", Some(body)).await;
    seen.assert_error(400, "VALIDATION_ERROR");
    let mut got = paths(&seen);
    got.sort();
    assert_eq!(got, ["id", "modules[1]", "name", "plan", "rateLimit.limit", "status", "subscription"]);

    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let body = json!({
        "name": "k", "scopes": ["orders:read", "bad scope"],
        "allowedOrigins": ["https://ok.example.com", "*", "https://*.com", "https://x.example.com/path", "null"],
        "expiresAt": "tomorrow",
    });
    let seen = app.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(body)).await;
    seen.assert_error(400, "VALIDATION_ERROR");
    let mut got = paths(&seen);
    got.sort();
    assert_eq!(
        got,
        ["allowedOrigins[1]", "allowedOrigins[2]", "allowedOrigins[3]", "allowedOrigins[4]", "expiresAt", "scopes[1]"]
    );

    let seen = app.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(json!({}))).await;
    let mut got = paths(&seen);
    got.sort();
    assert_eq!(got, ["name", "scopes"]);

    for raw in ["[1,2]", "{", "\"text\""] {
        let response = app
            .client
            .post(format!("{}/admin/v1/tenants", app.admin))
            .bearer_auth(ADMIN_TOKEN)
            .body(raw)
            .send()
            .await
            .unwrap();
        Seen::from(response).await.assert_error(400, "VALIDATION_ERROR");
    }
    let listed = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(listed.body["data"], json!([]), "nothing was written");
}

#[tokio::test]
async fn unknown_fields_are_rejected_on_patch_too() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let seen =
        app.admin_request(Method::PATCH, "/admin/v1/tenants/acme", Some(json!({ "id": "other", "colour": 1 }))).await;
    seen.assert_error(400, "VALIDATION_ERROR");
    let mut got = paths(&seen);
    got.sort();
    assert_eq!(got, ["colour", "id"]);
}

#[tokio::test]
async fn duplicate_tenant_ids_conflict_and_unknown_ids_are_404() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let seen =
        app.admin_request(Method::POST, "/admin/v1/tenants", Some(json!({ "id": "acme", "name": "Again" }))).await;
    seen.assert_error(409, "CONFLICT");
    for (method, path, body) in [
        (Method::GET, "/admin/v1/tenants/nope", None),
        (Method::PATCH, "/admin/v1/tenants/nope", Some(json!({ "name": "x" }))),
        (Method::GET, "/admin/v1/tenants/nope/keys", None),
        (Method::POST, "/admin/v1/tenants/nope/keys", Some(json!({ "name": "k", "scopes": [] }))),
        (Method::GET, "/admin/v1/keys/key_nope", None),
        (Method::PATCH, "/admin/v1/keys/key_nope", Some(json!({ "name": "x" }))),
        (Method::POST, "/admin/v1/keys/key_nope/revoke", None),
    ] {
        let seen = app.admin_request(method.clone(), path, body).await;
        seen.assert_error(404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn lists_are_paginated() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_tenant(json!({ "id": format!("t{i}"), "name": format!("T{i}") })).await;
    }
    let mut seen_ids = Vec::new();
    let mut path = "/admin/v1/tenants?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = app.admin_request(Method::GET, &path, None).await;
        assert_eq!(page.status, 200);
        pages += 1;
        for tenant in page.body["data"].as_array().unwrap() {
            seen_ids.push(tenant["id"].as_str().unwrap().to_owned());
        }
        match page.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/admin/v1/tenants?limit=2&cursor={cursor}"),
            None => {
                assert!(page.body.as_object().unwrap().contains_key("nextCursor"));
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen_ids, ["t0", "t1", "t2", "t3", "t4"]);

    let all = app.admin_request(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!((all.body["data"].as_array().unwrap().len(), all.body["nextCursor"].clone()), (5, Value::Null));
    for bad in ["limit=0", "limit=1001", "limit=abc", "limit=-1", "cursor=%25%25"] {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/tenants?{bad}"), None).await;
        seen.assert_error(400, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn the_secret_is_shown_once_and_never_again() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, secret) = app.create_key("acme", json!({ "name": "k", "scopes": ["orders:read"] })).await;
    assert!(secret.starts_with("kg_"));
    assert!(key["id"].as_str().unwrap().starts_with("key_"));
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert!(key["prefix"].as_str().unwrap().len() < 16);
    assert_eq!(key["tenantId"], "acme");
    assert_eq!(key["revokedAt"], Value::Null);
    assert_eq!(key["lastUsedAt"], Value::Null);
    assert_eq!(key["allowedOrigins"], json!([]));

    let id = key["id"].as_str().unwrap();
    let fetched = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    let listed = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    let patched = app.admin_request(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(json!({ "name": "n" }))).await;
    for seen in [&fetched, &listed, &patched] {
        assert_eq!(seen.status, 200);
        let text = seen.body.to_string();
        assert!(!text.contains(&secret), "the secret is never shown again");
        assert!(!text.contains("secret"), "no secret or hash field: {text}");
        assert!(!text.to_lowercase().contains("hash"));
    }
    let mut expected = key.clone();
    expected.as_object_mut().unwrap().remove("secret");
    assert_eq!(fetched.body["data"], expected);
}

#[tokio::test]
async fn revoking_is_idempotent_and_patches_apply_at_once() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);

    let patched = app.patch_key(id, json!({ "allowedOrigins": ["https://app.example.com"], "expiresAt": null })).await;
    assert_eq!(patched["allowedOrigins"], json!(["https://app.example.com"]));
    app.mint(&secret, Some(ORIGIN)).await.assert_error(403, "ORIGIN_NOT_ALLOWED");
    assert_eq!(app.mint(&secret, Some("https://app.example.com")).await.status, 201);

    let first = app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    let second = app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert!(first.body["data"]["revokedAt"].is_string());
    assert_eq!(first.body["data"]["revokedAt"], second.body["data"]["revokedAt"]);
    app.mint(&secret, Some("https://app.example.com")).await.assert_error(401, "API_KEY_REVOKED");
}

#[tokio::test]
async fn expires_at_in_the_past_expires_the_key_at_once_and_null_clears_it() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let id = key["id"].as_str().unwrap();
    app.patch_key(id, json!({ "expiresAt": "2020-01-01T00:00:00Z" })).await;
    app.mint(&secret, Some(ORIGIN)).await.assert_error(401, "API_KEY_EXPIRED");
    let cleared = app.patch_key(id, json!({ "expiresAt": null })).await;
    assert_eq!(cleared["expiresAt"], Value::Null);
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
}

#[tokio::test]
async fn last_used_at_is_written_behind() {
    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let id = key["id"].as_str().unwrap();
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(keygate::config::UsageConfig::default().flush_seconds * 3);
    loop {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
        if seen.body["data"]["lastUsedAt"].is_string() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lastUsedAt was not written");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
