//! Key lifecycle (SPEC §11), against a real keygate and its upstream: rolling a key gives it a
//! new secret and keeps everything else; earlier secrets work for the overlap, then answer
//! `API_KEY_EXPIRED`; a roll reaches another instance within a second.

use crate::common;

use std::time::{Duration, Instant};

use common::cli::Via;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `POST /admin/v1/keys/{id}/roll` with `body`.
async fn roll(app: &TestApp, id: &str, body: Value) -> Seen {
    app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/roll"), Some(body)).await
}

/// Rolls key `id` with `overlap` seconds: its `data`, asserting success.
async fn rolled(app: &TestApp, id: &str, overlap: u64) -> Value {
    let seen = roll(app, id, json!({ "overlapSeconds": overlap })).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    seen.body["data"].clone()
}

async fn key_of(app: &TestApp, id: &str) -> Value {
    let seen = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    seen.body["data"].clone()
}

async fn orders(app: &TestApp, secret: &str) -> Seen {
    app.request("GET", "/api/v1/orders").key(secret).send().await
}

fn millis(rfc3339: &Value) -> i64 {
    keygate::time::parse_rfc3339(rfc3339.as_str().expect("a timestamp")).expect("RFC 3339")
}

/// Asserts `at` is `seconds` from now, give or take the test's own latency.
#[track_caller]
fn about_from_now(at: &Value, seconds: i64) {
    let expected = keygate::time::now_millis() + seconds * 1000;
    let at = millis(at);
    assert!((expected - 3_000..=expected + 1_000).contains(&at), "{at} is not {seconds} s from now");
}

#[tokio::test]
async fn a_rolled_key_keeps_its_id_and_everything_else_and_both_secrets_work_during_the_overlap() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (key, old) = app.orders_key("acme", &["orders:read", "sessions:create"]).await;
    let id = key["id"].as_str().unwrap();
    let token = app.session(&old, ORIGIN).await;

    let data = rolled(&app, id, 60).await;
    let new = data["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with(data["prefix"].as_str().unwrap()), "the prefix is the current secret's");
    for field in
        ["id", "tenantId", "name", "scopes", "allowedOrigins", "expiresAt", "revokedAt", "rateLimit", "createdAt"]
    {
        assert_eq!(data[field], key[field], "{field} kept");
    }
    let earlier = data["rolledSecrets"].as_array().unwrap();
    assert_eq!(earlier.len(), 1);
    assert_eq!(earlier[0]["prefix"], key["prefix"]);
    assert_eq!(earlier[0]["lastUsedAt"], Value::Null);
    about_from_now(&earlier[0]["expiresAt"], 60);

    // Both work, as the same key.
    for secret in [&old, &new] {
        assert_eq!(orders(&app, secret).await.status, 200);
        assert_eq!(upstream.last().header("x-keygate-key"), Some(id));
    }
    // A session minted with the earlier secret is the key's: it goes on with the new one.
    let write = app.request("POST", "/api/v1/orders").key(&new).origin(ORIGIN).session(&token).send().await;
    assert_eq!(write.status, 403, "past the session check: {}", write.body);
    write.assert_error(403, "SCOPE_NOT_GRANTED");

    let shown = key_of(&app, id).await;
    assert_eq!(shown["prefix"], data["prefix"]);
    assert_eq!(shown["rolledSecrets"], data["rolledSecrets"]);
    // No secret, no hash, ever shown again.
    assert!(shown.get("secret").is_none() && !shown.to_string().contains(&new) && !shown.to_string().contains(&old));
    let listed = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(listed.body["data"][0]["rolledSecrets"], data["rolledSecrets"]);
}

#[tokio::test]
async fn the_rate_limit_is_the_key_s_whichever_secret_is_used() {
    let app = spawn_gateway(|_| {}).await.0;
    app.create_tenant(json!({ "id": "acme", "name": "acme", "modules": ["orders"] })).await;
    let (key, old) = app.limited_key("acme", &["orders:read"], 3).await;
    let new = rolled(&app, key["id"].as_str().unwrap(), 60).await["secret"].as_str().unwrap().to_owned();
    let mut remaining = Vec::new();
    for secret in [&old, &new, &old] {
        remaining.push(orders(&app, secret).await.header("x-ratelimit-remaining").map(str::to_owned));
    }
    assert_eq!(remaining, [Some("2".to_owned()), Some("1".to_owned()), Some("0".to_owned())]);
    orders(&app, &new).await.assert_error(429, "RATE_LIMITED");
}

#[tokio::test]
async fn an_ended_earlier_secret_is_expired_and_a_revoke_ends_every_secret() {
    let app = spawn_gateway(|_| {}).await.0;
    let (key, first) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap();

    // No overlap: the earlier secret ends at once, and is no longer listed.
    let data = rolled(&app, id, 0).await;
    let second = data["secret"].as_str().unwrap().to_owned();
    assert_eq!(data["rolledSecrets"], json!([]));
    orders(&app, &first).await.assert_error(401, "API_KEY_EXPIRED");
    assert_eq!(orders(&app, &second).await.status, 200);

    let third = rolled(&app, id, 600).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(orders(&app, &second).await.status, 200);
    let revoked = app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await;
    assert_eq!(revoked.status, 200);
    for secret in [&second, &third] {
        orders(&app, secret).await.assert_error(401, "API_KEY_REVOKED");
    }
    roll(&app, id, json!({ "overlapSeconds": 60 })).await.assert_error(409, "CONFLICT");
    roll(&app, "key_nosuchkey", json!({ "overlapSeconds": 60 })).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn a_later_roll_shortens_earlier_overlaps_and_never_lengthens_them() {
    let app = spawn_app().await;
    let (key, _) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap();
    rolled(&app, id, 3600).await;
    let data = rolled(&app, id, 60).await;
    let ends: Vec<_> = data["rolledSecrets"].as_array().unwrap().iter().map(|s| s["expiresAt"].clone()).collect();
    assert_eq!(ends.len(), 2);
    for end in &ends {
        about_from_now(end, 60);
    }
    let data = rolled(&app, id, 86_400).await;
    let earlier = data["rolledSecrets"].as_array().unwrap();
    assert_eq!(earlier.len(), 3, "{earlier:?}");
    // Soonest end first: the two from before keep their 60 s, the one just replaced gets a day.
    assert_eq!(earlier[0]["expiresAt"], ends[0]);
    assert_eq!(earlier[1]["expiresAt"], ends[1]);
    about_from_now(&earlier[2]["expiresAt"], 86_400);
}

#[tokio::test]
async fn an_earlier_secret_s_own_last_use_is_written_behind() {
    let app = spawn_gateway(|_| {}).await.0;
    let (key, old) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap();
    rolled(&app, id, 600).await;
    assert_eq!(orders(&app, &old).await.status, 200);
    let started = Instant::now();
    loop {
        let shown = key_of(&app, id).await;
        if !shown["rolledSecrets"][0]["lastUsedAt"].is_null() {
            assert!(!shown["lastUsedAt"].is_null(), "a use by any secret is the key's use");
            break;
        }
        let waited = std::time::Duration::from_secs(keygate::config::UsageConfig::default().flush_seconds * 3);
        assert!(started.elapsed() < waited, "the earlier secret's lastUsedAt not written within {waited:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_bad_roll_is_refused_naming_the_field_and_changes_nothing() {
    let app = spawn_gateway(|_| {}).await.0;
    let (key, old) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap();
    let bodies = [
        (json!({}), "overlapSeconds"),
        (json!({ "overlapSeconds": -1 }), "overlapSeconds"),
        (json!({ "overlapSeconds": 2_592_001 }), "overlapSeconds"),
        (json!({ "overlapSeconds": 1.5 }), "overlapSeconds"),
        (json!({ "overlapSeconds": "60" }), "overlapSeconds"),
        (json!({ "overlapSeconds": null }), "overlapSeconds"),
        (json!({ "overlapSeconds": 60, "secret": "kg_mine" }), "secret"),
    ];
    for (body, field) in bodies {
        let seen = roll(&app, id, body.clone()).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(seen.body["error"]["details"][0]["path"], field, "{body}");
    }
    let answer = app
        .client
        .post(format!("{}/admin/v1/keys/{id}/roll", app.admin))
        .bearer_auth(ADMIN_TOKEN)
        .body("[60]")
        .send()
        .await
        .unwrap();
    Seen::from(answer).await.assert_error(400, "VALIDATION_ERROR");
    let shown = key_of(&app, id).await;
    assert_eq!((shown["prefix"].clone(), shown["rolledSecrets"].clone()), (key["prefix"].clone(), json!([])));
    assert_eq!(orders(&app, &old).await.status, 200);
    // The longest overlap there is, and none at all, are taken.
    assert_eq!(roll(&app, id, json!({ "overlapSeconds": 2_592_000 })).await.status, 200);
    assert_eq!(roll(&app, id, json!({ "overlapSeconds": 0.0 })).await.status, 200);
}

#[tokio::test]
async fn a_roll_reaches_another_instance_within_a_second() {
    let (a, _) = spawn_gateway(|_| {}).await;
    let routes = a.config.routes.clone();
    let b = spawn_in(std::sync::Arc::clone(&a.test_store), move |c| c.routes = routes).await;
    let (key, old) = a.orders_key("acme", &["orders:read"]).await;
    assert_eq!(orders(&b, &old).await.status, 200, "cached on b");

    let new = rolled(&a, key["id"].as_str().unwrap(), 0).await["secret"].as_str().unwrap().to_owned();
    let started = Instant::now();
    loop {
        let (with_old, with_new) = (orders(&b, &old).await, orders(&b, &new).await);
        if with_old.code() == "API_KEY_EXPIRED" && with_new.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "b: {} and {}", with_old.status, with_new.status);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// SPEC §11's roll under load: a client on the earlier secret at a steady rate gets only 2xx
/// until the overlap ends, then only `API_KEY_EXPIRED`; one switched to the new secret at the
/// roll gets only 2xx throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_roll_s_overlap_ends_cleanly_for_both_clients() {
    let app = spawn_gateway(|_| {}).await.0;
    let (key, old) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap().to_owned();

    let steady = |secret: String, until: Instant| {
        let app = (app.client.clone(), app.public.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while Instant::now() < until {
                let sent = keygate::time::now_millis();
                let answer = app.0.get(format!("{}/api/v1/orders", app.1)).bearer_auth(&secret).send().await.unwrap();
                let seen = Seen::from(answer).await;
                answers.push((sent, keygate::time::now_millis(), seen.status.as_u16(), seen.code().to_owned()));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
    };
    let until = Instant::now() + Duration::from_millis(3_500);
    let on_old = steady(old.clone(), until);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let data = rolled(&app, &id, 2).await;
    let ends = millis(&data["rolledSecrets"][0]["expiresAt"]);
    let on_new = steady(data["secret"].as_str().unwrap().to_owned(), until);

    let old_answers = on_old.await.unwrap();
    let (mut before, mut after) = (0, 0);
    for (sent, answered, status, code) in &old_answers {
        if *answered < ends {
            assert_eq!(*status, 200, "sent at {sent}, answered at {answered}, before the end at {ends}: {code}");
            before += 1;
        } else if *sent >= ends {
            assert_eq!((*status, code.as_str()), (401, "API_KEY_EXPIRED"), "sent at {sent}, after the end at {ends}");
            after += 1;
        }
    }
    assert!(before > 20 && after > 20, "{before} answers before the end, {after} after");
    let new_answers = on_new.await.unwrap();
    assert!(new_answers.len() > 40, "{} answers", new_answers.len());
    assert!(new_answers.iter().all(|(_, _, status, _)| *status == 200), "the new secret failed once");
}

// The CLI blocks its thread while keygate answers it: keygate needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_rolls_over_the_api_and_on_the_store() {
    let app = spawn_app().await;
    let (key, old) = app.orders_key("acme", &["orders:read"]).await;
    let id = key["id"].as_str().unwrap();
    let over_api = Via::Api(&app).ok(&["key", "roll", id, "--overlap-seconds", "60"]);
    assert_eq!(over_api["id"], key["id"]);
    assert!(over_api["secret"].as_str().unwrap() != old);
    let on_store = Via::Store(&app.test_store).ok(&["key", "roll", id, "--overlap-seconds", "0"]);
    assert_eq!(on_store["id"], key["id"]);
    assert_eq!(on_store["rolledSecrets"].as_array().unwrap().len(), 0, "the overlap of 0 ended both earlier secrets");
}

fn import_body(secret: &str, prefix: &str) -> Value {
    json!({ "name": "migrated", "scopes": ["orders:read"], "importHash": sha256_hex(secret), "prefix": prefix })
}

async fn import(app: &TestApp, body: Value) -> Seen {
    app.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(body)).await
}

#[tokio::test]
async fn an_imported_key_answers_to_its_existing_secret_whatever_its_format() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "acme", "modules": ["orders"] })).await;
    // Kong key-auth's, a Stripe-like one, a home-made one: none in keygate's format.
    for (secret, prefix) in
        [("3f9a1c2e-kong-key", "3f9a1c"), ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC3"), ("x", "x")]
    {
        let created = import(&app, import_body(secret, prefix)).await;
        assert_eq!(created.status, 201, "{}", created.body);
        let data = &created.body["data"];
        assert!(data.get("secret").is_none(), "keygate never had the secret: it shows none");
        assert_eq!((data["prefix"].as_str(), &data["rolledSecrets"]), (Some(prefix), &json!([])));
        assert_eq!(orders(&app, secret).await.status, 200, "{secret}");
        assert_eq!(upstream.last().header("x-keygate-key"), data["id"].as_str());
        // A hash some key already has.
        import(&app, import_body(secret, prefix)).await.assert_error(409, "CONFLICT");
    }
    // A credential in keygate's own format is checked for its checksum before any lookup.
    assert_eq!(import(&app, import_body("kg_mine", "kg_mine")).await.status, 201);
    orders(&app, "kg_mine").await.assert_error(401, "API_KEY_INVALID");
    // Unknown credentials of any format are refused alike.
    for unknown in ["3f9a1c2e-kong-kez", "y", &"z".repeat(512)] {
        orders(&app, unknown).await.assert_error(401, "API_KEY_INVALID");
    }
    orders(&app, &"z".repeat(513)).await.assert_error(401, "API_KEY_INVALID");
}

#[tokio::test]
async fn an_imported_key_rolls_like_any_and_its_old_hash_stays_taken() {
    let app = spawn_gateway(|_| {}).await.0;
    app.create_tenant(json!({ "id": "acme", "name": "acme", "modules": ["orders"] })).await;
    let legacy = "legacy-secret-0001";
    let created = import(&app, import_body(legacy, "legacy")).await;
    let id = created.body["data"]["id"].as_str().unwrap();
    let data = rolled(&app, id, 600).await;
    let new = data["secret"].as_str().unwrap();
    assert!(new.starts_with("kg_"), "a roll makes a secret of keygate's");
    assert_eq!(data["rolledSecrets"][0]["prefix"], "legacy");
    for secret in [legacy, new] {
        assert_eq!(orders(&app, secret).await.status, 200);
    }
    // The earlier secret's hash is still the key's: importing it again is a conflict.
    import(&app, import_body(legacy, "legacy")).await.assert_error(409, "CONFLICT");
}

#[tokio::test]
async fn a_bad_import_is_refused_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "acme" })).await;
    let hash = sha256_hex("legacy");
    let base = json!({ "name": "migrated", "scopes": [] });
    let with = |extra: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (with(json!({ "importHash": hash.to_uppercase(), "prefix": "abc" })), "importHash"),
        (with(json!({ "importHash": &hash[1..], "prefix": "abc" })), "importHash"),
        (with(json!({ "importHash": format!("{}g", &hash[1..]), "prefix": "abc" })), "importHash"),
        (with(json!({ "importHash": 7, "prefix": "abc" })), "importHash"),
        (with(json!({ "importHash": hash, "prefix": "" })), "prefix"),
        (with(json!({ "importHash": hash, "prefix": "a".repeat(17) })), "prefix"),
        (with(json!({ "importHash": hash, "prefix": "a b" })), "prefix"),
        (with(json!({ "importHash": hash, "prefix": "é" })), "prefix"),
        (with(json!({ "importHash": hash })), "prefix"),
        (with(json!({ "prefix": "abc" })), "prefix"),
    ];
    for (body, field) in cases {
        let seen = import(&app, body.clone()).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        let paths: Vec<_> =
            seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].clone()).collect();
        assert_eq!(paths, [json!(field)], "{body}");
    }
    let listed = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(listed.body["data"], json!([]), "nothing written");
}

// The CLI blocks its thread while keygate answers it: keygate needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_json_lines_and_one_bad_line_stops_nothing_else() {
    let (app, _) = spawn_gateway(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "acme", "modules": ["orders"] })).await;
    let lines = [
        import_body("kong-key-one", "kong-o").to_string(),
        json!({ "name": "bad", "scopes": [], "importHash": "nothex", "prefix": "bad" }).to_string(),
        "not json".to_owned(),
        String::new(),
        import_body("kong-key-two", "kong-t").to_string(),
        import_body("kong-key-one", "kong-o").to_string(),
    ];
    for via in [Via::Api(&app), Via::Store(&app.test_store)] {
        let input = lines.join("\n");
        let ran = via.run_with_input(&["key", "import", "--tenant", "acme"], &input);
        assert_eq!(ran.code, 1, "some lines were refused: {}", ran.stderr);
        let outcomes: Vec<Value> = ran.stdout_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let summary: Vec<_> = outcomes.iter().map(|o| (o["line"].as_u64().unwrap(), o["status"].as_u64())).collect();
        match via {
            Via::Api(_) => {
                assert_eq!(summary, [(1, Some(201)), (2, Some(400)), (3, None), (5, Some(201)), (6, Some(409))])
            }
            // The second time every hash is taken.
            Via::Store(_) => {
                assert_eq!(summary, [(1, Some(409)), (2, Some(400)), (3, None), (5, Some(409)), (6, Some(409))])
            }
        }
        assert_eq!(outcomes[1]["error"]["details"][0]["path"], "importHash");
        assert!(ran.stderr.contains("lines refused"), "{}", ran.stderr);
    }
    for secret in ["kong-key-one", "kong-key-two"] {
        assert_eq!(orders(&app, secret).await.status, 200);
    }
}

fn kong_headers(config: &mut keygate::config::Config) {
    config.keys.headers = ["authorization", "apikey", "x-api-key"].map(|h| h.parse().unwrap()).to_vec();
}

#[tokio::test]
async fn a_key_comes_in_the_headers_a_migrated_client_already_sends_and_goes_no_further() {
    let (app, upstream) = spawn_gateway(kong_headers).await;
    let (key, secret) = app.orders_key("acme", &["orders:read"]).await;
    for header in ["apikey", "x-api-key", "ApiKey"] {
        let seen = app.request("GET", "/api/v1/orders").header(header, &secret).send().await;
        assert_eq!(seen.status, 200, "{header}: {}", seen.body);
        let received = upstream.last();
        assert_eq!(received.header("x-keygate-key"), key["id"].as_str());
        for consumed in ["authorization", "apikey", "x-api-key"] {
            assert_eq!(received.header(consumed), None, "{consumed} reached the upstream");
        }
    }
    // The same key in two listed headers is one key; two different ones, or one header twice, are not.
    let both = app.request("GET", "/api/v1/orders").key(&secret).header("apikey", &secret).send().await;
    assert_eq!(both.status, 200);
    let other = app.orders_key("globex", &["orders:read"]).await.1;
    let received = upstream.received().len();
    app.request("GET", "/api/v1/orders")
        .key(&secret)
        .header("x-api-key", &other)
        .send()
        .await
        .assert_error(401, "API_KEY_INVALID");
    let twice = app
        .client
        .get(format!("{}/api/v1/orders", app.public))
        .header("apikey", &secret)
        .header("apikey", &secret)
        .send()
        .await
        .unwrap();
    Seen::from(twice).await.assert_error(401, "API_KEY_INVALID");
    // Never from the query string; without a key the answer names every way to send one.
    let seen = app.request("GET", &format!("/api/v1/orders?apikey={secret}")).send().await;
    seen.assert_error(401, "API_KEY_REQUIRED");
    let message = seen.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Authorization: Bearer <key>") && message.contains("apikey: <key>"), "{message}");
    assert_eq!(upstream.received().len(), received, "nothing refused reached the upstream");
}

#[tokio::test]
async fn by_default_only_authorization_carries_a_key_and_bad_header_lists_are_refused() {
    let app = spawn_gateway(|_| {}).await.0;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    app.request("GET", "/api/v1/orders").header("apikey", &secret).send().await.assert_error(401, "API_KEY_REQUIRED");

    let load =
        |headers: &str| keygate::config::Config::parse(&format!("[keys]\nheaders = {headers}\n"), std::iter::empty());
    assert!(load(r#"["authorization", "x-api-key"]"#).is_ok());
    for (headers, named) in [
        ("[]", "keys.headers"),
        (r#"["X-Api-Key"]"#, "keys.headers"),
        (r#"["bad header"]"#, "keys.headers"),
        (r#"["x-session-token"]"#, "keys.headers"),
        (r#"["x-forwarded-key"]"#, "keys.headers"),
        (r#"["apikey", "apikey"]"#, "keys.headers[1]"),
    ] {
        let error = load(headers).unwrap_err().to_string();
        assert!(error.contains(named), "{headers}: {error}");
    }
}

// Current-thread: the captured subscriber is this thread's (common::logs). Alone: run beside
// the other tests of this module it captured nothing at all, twice in two runs.
#[tokio::test]
async fn a_key_s_header_is_never_logged() {
    let _alone = metrics_alone().await;
    let (logs, _guard) = common::logs::start();
    let (app, _) = spawn_gateway(kong_headers).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    assert_eq!(app.request("GET", "/api/v1/orders").header("x-api-key", &secret).send().await.status, 200);
    app.request("GET", "/api/v1/orders")
        .header("apikey", "not-a-key-of-ours")
        .send()
        .await
        .assert_error(401, "API_KEY_INVALID");
    keygate::logging::flush();
    let text = logs.text();
    assert_eq!(text.lines().filter(|l| l.contains("/api/v1/orders")).count(), 2, "both requests logged: {text}");
    assert!(!text.contains(&secret) && !text.contains("not-a-key-of-ours"), "a key was logged");
}

async fn found(app: &TestApp, query: &str) -> Seen {
    app.admin_request(Method::GET, &format!("/admin/v1/keys?{query}"), None).await
}

fn ids(seen: &Seen) -> Vec<String> {
    seen.body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_key_is_found_across_tenants_by_the_start_of_any_of_its_prefixes() {
    let app = spawn_app().await;
    let (acme, _) = app.orders_key("acme", &["orders:read"]).await;
    let (globex, _) = app.orders_key("globex", &["orders:read"]).await;
    let (acme_id, globex_id) = (acme["id"].as_str().unwrap(), globex["id"].as_str().unwrap());
    let old_prefix = acme["prefix"].as_str().unwrap().to_owned();
    let new_prefix = rolled(&app, acme_id, 0).await["prefix"].as_str().unwrap().to_owned();

    // The current prefix, and the earlier one (ended, still the key's), each by its first 6.
    for prefix in [&new_prefix, &old_prefix] {
        assert_eq!(ids(&found(&app, &format!("prefix={}", &prefix[..6])).await), [acme_id], "{prefix}");
    }
    let seen = found(&app, &format!("prefix={}", globex["prefix"].as_str().unwrap())).await;
    assert_eq!(ids(&seen), [globex_id]);
    assert_eq!(seen.body["data"][0]["tenantId"], "globex");
    // Case matters: prefixes are base62.
    let shouted = format!("prefix={}", new_prefix[..6].to_uppercase().replace("KG_", "kg_"));
    if shouted != format!("prefix={}", &new_prefix[..6]) {
        assert_eq!(ids(&found(&app, &shouted).await), Vec::<String>::new());
    }
    // Imported prefixes too, and a page at a time.
    app.create_tenant(json!({ "id": "initech", "name": "initech" })).await;
    for n in 0..3 {
        let body = json!({ "name": "m", "scopes": [], "importHash": sha256_hex(&format!("legacy-{n}")), "prefix": format!("legacy{n}") });
        assert_eq!(app.admin_request(Method::POST, "/admin/v1/tenants/initech/keys", Some(body)).await.status, 201);
    }
    let first = found(&app, "prefix=legacy&limit=2").await;
    assert_eq!(ids(&first).len(), 2);
    let cursor = first.body["nextCursor"].as_str().unwrap();
    assert_eq!(ids(&found(&app, &format!("prefix=legacy&limit=2&cursor={cursor}")).await).len(), 1);

    for bad in ["", "prefix=", "prefix=kg_ab", &format!("prefix={}", "a".repeat(17)), "prefix=abc%20def"] {
        let seen = found(&app, bad).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(seen.body["error"]["details"][0]["path"], "prefix", "{bad}");
    }
}

#[tokio::test]
async fn a_tenant_s_keys_are_listed_by_state() {
    let app = spawn_app().await;
    let (usable, _) = app.orders_key("acme", &["orders:read"]).await;
    let (revoked, _) = app.create_key("acme", json!({ "name": "r", "scopes": [] })).await;
    let (expired, _) =
        app.create_key("acme", json!({ "name": "e", "scopes": [], "expiresAt": rfc3339(now_seconds() - 60) })).await;
    let (revoked_and_expired, _) =
        app.create_key("acme", json!({ "name": "re", "scopes": [], "expiresAt": rfc3339(now_seconds() - 60) })).await;
    for key in [&revoked, &revoked_and_expired] {
        let id = key["id"].as_str().unwrap();
        assert_eq!(app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await.status, 200);
    }
    let app = &app;
    let listed = |query: &'static str| async move {
        let seen = app.admin_request(Method::GET, &format!("/admin/v1/tenants/acme/keys{query}"), None).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        let mut found = ids(&seen);
        found.sort();
        found
    };
    let sorted = |keys: &[&Value]| {
        let mut ids: Vec<String> = keys.iter().map(|k| k["id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(listed("?state=usable").await, sorted(&[&usable]));
    assert_eq!(listed("?state=revoked").await, sorted(&[&revoked, &revoked_and_expired]), "revocation wins");
    assert_eq!(listed("?state=expired").await, sorted(&[&expired]));
    assert_eq!(listed("").await.len(), 4);
    let seen = app.admin_request(Method::GET, "/admin/v1/tenants/acme/keys?state=gone", None).await;
    seen.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(seen.body["error"]["details"][0]["path"], "state");
}

#[tokio::test]
async fn a_deleted_key_is_gone_everywhere_and_every_secret_of_it_unknown_within_a_second() {
    let (a, _) = spawn_gateway(|_| {}).await;
    let routes = a.config.routes.clone();
    let b = spawn_in(std::sync::Arc::clone(&a.test_store), move |c| c.routes = routes).await;
    let (key, old) = a.orders_key("acme", &["orders:read"]).await;
    let (_, bystander) = a.create_key("acme", json!({ "name": "stays", "scopes": ["orders:read"] })).await;
    let id = key["id"].as_str().unwrap();
    let new = rolled(&a, id, 600).await["secret"].as_str().unwrap().to_owned();
    // b holds the key under both of its secrets.
    let started = Instant::now();
    while orders(&b, &new).await.status != 200 {
        assert!(started.elapsed() < Duration::from_secs(1), "the roll did not reach b");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(orders(&b, &old).await.status, 200);

    let deleted = a.admin_request(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!((deleted.status.as_u16(), &deleted.body), (204, &Value::Null));
    for secret in [&old, &new] {
        orders(&a, secret).await.assert_error(401, "API_KEY_INVALID");
    }
    let started = Instant::now();
    loop {
        let (with_old, with_new) = (orders(&b, &old).await, orders(&b, &new).await);
        if with_old.code() == "API_KEY_INVALID" && with_new.code() == "API_KEY_INVALID" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "b: {} and {}", with_old.code(), with_new.code());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(orders(&b, &bystander).await.status, 200, "the tenant's other key is untouched");
    a.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.assert_error(404, "NOT_FOUND");
    let listed = a.admin_request(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert!(listed.body["data"].as_array().unwrap().iter().all(|k| k["id"] != key["id"]));
    assert_eq!(
        ids(&found(&a, &format!("prefix={}", &key["prefix"].as_str().unwrap()[..6])).await),
        Vec::<String>::new()
    );
    a.admin_request(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await.assert_error(404, "NOT_FOUND");
    // The old secret's hash is free again: it can be imported.
    let body = json!({ "name": "back", "scopes": [], "importHash": sha256_hex(&old), "prefix": "back" });
    assert_eq!(a.admin_request(Method::POST, "/admin/v1/tenants/acme/keys", Some(body)).await.status, 201);
}

// The CLI blocks its thread while keygate answers it: keygate needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_deleted_only_once_it_has_no_keys() {
    let app = spawn_app().await;
    let (key, _) = app.orders_key("acme", &["orders:read"]).await;
    app.admin_request(Method::DELETE, "/admin/v1/tenants/acme", None).await.assert_error(409, "CONFLICT");
    let ran = Via::Api(&app).run(&["key", "delete", key["id"].as_str().unwrap()]);
    assert_eq!((ran.code, ran.stdout_text.as_str()), (0, ""), "{}", ran.stderr);
    let ran = Via::Store(&app.test_store).run(&["tenant", "delete", "acme"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await.assert_error(404, "NOT_FOUND");
    app.admin_request(Method::DELETE, "/admin/v1/tenants/acme", None).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn meta_is_kept_as_given_replaced_whole_and_reaches_only_a_route_that_asks_for_it() {
    let (app, upstream) = spawn_gateway(|c| c.routes[0].forward_meta = true).await;
    let crm = json!({ "crm": "0015g00000XyZ", "plan": { "name": "Pro", "seats": 25 }, "tags": ["b2b", "eu"], "note": "Zürich ✓" });
    let tenant = app.create_tenant(json!({ "id": "acme", "name": "acme", "modules": ["orders"], "meta": crm })).await;
    assert_eq!(tenant["meta"], crm);
    assert_eq!(tenant["meta"].to_string(), crm.to_string(), "the keys in the order given");
    let (key, secret) = app
        .create_key("acme", json!({ "name": "web", "scopes": ["orders:read", "orders:write"], "meta": { "customer": "c-42", "z": 1, "a": 2 } }))
        .await;
    assert_eq!(key["meta"].to_string(), r#"{"customer":"c-42","z":1,"a":2}"#);
    let id = key["id"].as_str().unwrap();

    // The route that asks for it gets the key's meta as compact JSON, in ASCII.
    assert_eq!(orders(&app, &secret).await.status, 200);
    assert_eq!(upstream.last().header("x-keygate-meta"), Some(r#"{"customer":"c-42","z":1,"a":2}"#));
    let accented = app.patch_key(id, json!({ "meta": { "city": "Zürich" } })).await;
    assert_eq!(accented["meta"], json!({ "city": "Zürich" }));
    assert_eq!(orders(&app, &secret).await.status, 200);
    assert_eq!(upstream.last().header("x-keygate-meta"), Some(r#"{"city":"Z\u00fcrich"}"#));
    // The forwarded values are made once per cached key: a change to the key makes them again.
    assert_eq!(upstream.last().header("x-keygate-scopes"), Some("orders:read orders:write"));
    app.patch_key(id, json!({ "scopes": ["orders:read"], "meta": { "city": "Genève" } })).await;
    assert_eq!(orders(&app, &secret).await.status, 200);
    assert_eq!(upstream.last().header("x-keygate-scopes"), Some("orders:read"));
    assert_eq!(upstream.last().header("x-keygate-meta"), Some(r#"{"city":"Gen\u00e8ve"}"#));
    app.patch_key(id, json!({ "scopes": ["orders:read", "orders:write"] })).await;
    // Another route does not, and a client's own X-Keygate-Meta never passes.
    let write =
        app.request("POST", "/api/v1/orders").key(&secret).header("x-keygate-meta", "{\"forged\":1}").send().await;
    assert_eq!(write.status, 200);
    assert_eq!(upstream.last().header("x-keygate-meta"), None);

    // PATCH replaces it whole; null clears it; a patch without it leaves it.
    let replaced = app.patch_key(id, json!({ "meta": { "only": true } })).await;
    assert_eq!(replaced["meta"], json!({ "only": true }));
    assert_eq!(app.patch_key(id, json!({ "name": "renamed" })).await["meta"], json!({ "only": true }));
    assert_eq!(app.patch_key(id, json!({ "meta": null })).await["meta"], Value::Null);
    assert_eq!(app.patch_tenant("acme", json!({ "meta": null })).await["meta"], Value::Null);
    assert_eq!(orders(&app, &secret).await.status, 200);
    assert_eq!(upstream.last().header("x-keygate-meta"), None, "no meta, no header");

    // Bounds: an object of at most 4,096 bytes as compact JSON.
    let just = json!({ "k": "x".repeat(4096 - r#"{"k":""}"#.len()) });
    assert_eq!(just.to_string().len(), 4096);
    assert_eq!(app.patch_key(id, json!({ "meta": just })).await["meta"], just);
    let over = json!({ "k": "x".repeat(4097 - r#"{"k":""}"#.len()) });
    for bad in [over, json!([1]), json!("text"), json!(7)] {
        let seen =
            app.admin_request(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(json!({ "meta": bad }))).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(seen.body["error"]["details"][0]["path"], "meta");
        let seen = app.admin_request(Method::PATCH, "/admin/v1/tenants/acme", Some(json!({ "meta": bad }))).await;
        seen.assert_error(400, "VALIDATION_ERROR");
    }
    assert_eq!(key_of(&app, id).await["meta"], just, "nothing written");
}

// The CLI blocks its thread while keygate answers it: keygate needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_meta_and_names_the_flag_when_it_is_not_an_object() {
    let app = spawn_app().await;
    let cli = Via::Api(&app);
    let tenant = cli.ok(&["tenant", "create", "--id", "acme", "--name", "Acme", "--meta", r#"{"crm":"0015g"}"#]);
    assert_eq!(tenant["meta"], json!({ "crm": "0015g" }));
    let key = cli.ok(&["key", "create", "acme", "--name", "web", "--meta", r#"{"plan":"pro"}"#]);
    assert_eq!(key["meta"], json!({ "plan": "pro" }));
    let id = key["id"].as_str().unwrap();
    assert_eq!(cli.ok(&["key", "update", id, "--meta", "null"])["meta"], Value::Null);
    let ran = cli.run(&["key", "update", id, "--meta", "plan=pro"]);
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("--meta"), "{}", ran.stderr);
}
