//! Signing-key rotation from the CLI, through the admin API, while keygate runs: a new key
//! signs at once, sessions signed by the old key keep verifying until it is retired, and the
//! key that signs cannot be retired.

use crate::common;

use std::time::Duration;

use common::cli::Via;
use common::*;
use reqwest::Method;
use serde_json::Value;

fn keygate(app: &TestApp, args: &[&str]) -> (i32, Value, String) {
    let ran = Via::Api(app).run(args);
    (ran.code, ran.stdout["data"].clone(), ran.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_then_retire() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["sessions:create", "orders:write"]).await;
    let old = app.session(&secret, ORIGIN).await;
    let old_kid = jwt_part(&old, 0)["kid"].as_str().unwrap().to_owned();

    let (code, rotated, stderr) = keygate(&app, &["signing-key", "rotate"]);
    assert_eq!(code, 0, "{stderr}");
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["signing"], true);
    assert!(rotated.get("privateKey").is_none() && !rotated.to_string().contains("private"));

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let new = app.session(&secret, ORIGIN).await;
    assert_eq!(jwt_part(&new, 0)["kid"], new_kid.as_str(), "the new key signs");
    let write = |token: String| {
        let app = &app;
        let secret = secret.clone();
        async move { app.request("POST", "/api/v1/orders").key(&secret).origin(ORIGIN).session(&token).send().await }
    };
    assert_eq!(write(old.clone()).await.status, 200, "the old key still verifies");
    assert_eq!(write(new.clone()).await.status, 200);

    let (code, _, stderr) = keygate(&app, &["signing-key", "retire", &new_kid]);
    assert_eq!(code, 1);
    assert!(stderr.contains("CONFLICT") && stderr.contains("rotate first"), "{stderr}");

    let (code, retired, stderr) = keygate(&app, &["signing-key", "retire", &old_kid]);
    assert_eq!(code, 0, "{stderr}");
    assert!(retired["retiredAt"].is_string());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    write(old).await.assert_error(401, "SESSION_INVALID");
    assert_eq!(write(new).await.status, 200);

    let (_, listed, _) = keygate(&app, &["signing-key", "list"]);
    let signing: Vec<_> = listed.as_array().unwrap().iter().filter(|k| k["signing"] == true).collect();
    assert_eq!(signing.len(), 1);
    assert_eq!(upstream.count(), 3);
    let (code, _, stderr) = keygate(&app, &["signing-key", "retire", "sk_unknown"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("NOT_FOUND"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_rotation_publishes_both_keys_until_one_is_retired() {
    let (app, _) = spawn_gateway(|c| c.sessions.algorithm = keygate::config::SessionAlgorithm::EdDSA).await;
    let run = |args: &[&str]| Via::Api(&app).ok(args);
    let first = app.get("/.well-known/jwks.json").await.body["keys"][0]["kid"].as_str().unwrap().to_owned();
    let rotated = run(&["signing-key", "rotate"]);
    assert_eq!(rotated["algorithm"], "EdDSA");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let kids: Vec<String> = app.get("/.well-known/jwks.json").await.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [first.clone(), rotated["kid"].as_str().unwrap().to_owned()]);
    run(&["signing-key", "retire", &first]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let keys = app.get("/.well-known/jwks.json").await.body["keys"].clone();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["kid"], rotated["kid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_rotates_and_retires_like_the_cli() {
    let (app, _) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["sessions:create", "orders:write"]).await;
    let old = app.session(&secret, ORIGIN).await;
    let rotated = app.admin_request(Method::POST, "/admin/v1/signing-keys", None).await;
    assert_eq!(rotated.status, 201);
    assert_eq!(rotated.body["data"]["signing"], true);
    assert!(!rotated.body.to_string().contains("private"), "no key material: {}", rotated.body);
    let new = app.session(&secret, ORIGIN).await;
    assert_eq!(jwt_part(&new, 0)["kid"], rotated.body["data"]["kid"], "the new key signs at once on this instance");
    let write = |token: String| {
        let (app, secret) = (&app, secret.clone());
        async move { app.request("POST", "/api/v1/orders").key(&secret).origin(ORIGIN).session(&token).send().await }
    };
    assert_eq!(write(old.clone()).await.status, 200, "the old key still verifies");

    let old_kid = jwt_part(&old, 0)["kid"].as_str().unwrap().to_owned();
    let retired = app.admin_request(Method::POST, &format!("/admin/v1/signing-keys/{old_kid}/retire"), None).await;
    assert_eq!(retired.status, 200);
    assert!(retired.body["data"]["retiredAt"].is_string());
    write(old).await.assert_error(401, "SESSION_INVALID");
    assert_eq!(write(new).await.status, 200);
    let listed = app.admin_request(Method::GET, "/admin/v1/signing-keys", None).await;
    assert_eq!(listed.body["data"].as_array().unwrap().iter().filter(|k| k["signing"] == true).count(), 1);
}
