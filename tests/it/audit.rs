//! The audit log and named admin tokens (SPEC §12), against a real keygate: every admin write
//! appends one entry naming who made it, what it did and the object before and after; a failed
//! write appends none; the list is newest first, filtered and paged by cursor, and cannot be
//! changed; the retention prunes old entries. A `read` token reads and cannot write.

use crate::common;

use std::time::Duration;

use common::cli::Via;
use common::*;
use keygate::config::{AdminRole, AdminTokenConfig, Config};
use reqwest::Method;
use serde_json::{Value, json};

const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
const SUPPORT_TOKEN: &str = "support-token-0123456789abc";

fn with_named_tokens(config: &mut Config) {
    for (name, token, role) in [("ops", OPS_TOKEN, AdminRole::Admin), ("support", SUPPORT_TOKEN, AdminRole::Read)] {
        config.admin.tokens.push(AdminTokenConfig { name: name.to_owned(), token: token.to_owned(), role });
    }
}

/// An admin request with `token`.
async fn as_token(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> Seen {
    let mut request = app.client.request(method, format!("{}{path}", app.admin)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Seen::from(request.send().await.expect("admin request")).await
}

/// Every entry `query` selects, following `nextCursor` a page of `limit` at a time.
async fn entries(app: &TestApp, query: &str, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let separator = if query.is_empty() { "" } else { "&" };
        let path = format!("/admin/v1/audit?limit={limit}{separator}{query}{cursor}");
        let seen = app.admin_request(Method::GET, &path, None).await;
        assert_eq!(seen.status, 200, "{path}: {}", seen.body);
        all.extend(seen.body["data"].as_array().unwrap().iter().cloned());
        match seen.body["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return all,
        }
    }
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|entry| entry["action"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn every_admin_write_appends_one_entry_with_its_actor_target_and_the_object_before_and_after() {
    let app = spawn_with(with_named_tokens).await;
    let first_signer = app.admin_request(Method::GET, "/admin/v1/signing-keys", None).await.body["data"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = &app;
    let ops = |method, path: String, body| async move { as_token(app, OPS_TOKEN, method, &path, body).await };

    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    app.patch_tenant("acme", json!({ "status": "suspended" })).await;
    let (key, secret) = app.create_key("acme", json!({ "name": "web", "scopes": [] })).await;
    let id = key["id"].as_str().unwrap().to_owned();
    let import_hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let imported = ops(
        Method::POST,
        "/admin/v1/tenants/acme/keys".to_owned(),
        Some(json!({ "name": "old", "scopes": [], "importHash": import_hash, "prefix": "legacy_" })),
    )
    .await;
    assert_eq!(imported.status, 201, "{}", imported.body);
    let imported_id = imported.body["data"]["id"].as_str().unwrap().to_owned();
    app.patch_key(&id, json!({ "name": "web-2" })).await;
    let rolled = ops(Method::POST, format!("/admin/v1/keys/{id}/roll"), Some(json!({ "overlapSeconds": 60 }))).await;
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    let new_secret = rolled.body["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(app.admin_request(Method::POST, &format!("/admin/v1/keys/{id}/revoke"), None).await.status, 200);
    for key_id in [&id, &imported_id] {
        assert_eq!(app.admin_request(Method::DELETE, &format!("/admin/v1/keys/{key_id}"), None).await.status, 204);
    }
    assert_eq!(ops(Method::DELETE, "/admin/v1/tenants/acme".to_owned(), None).await.status, 204);
    let rotated = ops(Method::POST, "/admin/v1/signing-keys".to_owned(), None).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let retired = app.admin_request(Method::POST, &format!("/admin/v1/signing-keys/{first_signer}/retire"), None).await;
    assert_eq!(retired.status, 200, "{}", retired.body);

    let log = entries(app, "", 100).await;
    assert_eq!(
        actions(&log),
        [
            "signing_key.retire",
            "signing_key.rotate",
            "tenant.delete",
            "key.delete",
            "key.delete",
            "key.revoke",
            "key.roll",
            "key.update",
            "key.import",
            "key.create",
            "tenant.update",
            "tenant.create",
            // keygate's own first signing key, made at its first start.
            "signing_key.rotate",
        ],
        "one entry a write, newest first"
    );
    let actors: Vec<&str> = log.iter().map(|entry| entry["actor"].as_str().unwrap()).collect();
    assert_eq!(
        actors,
        ["admin", "ops", "ops", "admin", "admin", "admin", "ops", "admin", "ops", "admin", "admin", "admin", "keygate"],
        "each write under the name of the token that made it"
    );
    let targets: Vec<&str> = log.iter().map(|entry| entry["targetId"].as_str().unwrap()).collect();
    let kid = rotated.body["data"]["kid"].as_str().unwrap();
    assert_eq!(
        targets,
        [
            &first_signer,
            kid,
            "acme",
            &imported_id,
            &id,
            &id,
            &id,
            &id,
            &imported_id,
            &id,
            "acme",
            "acme",
            &first_signer
        ]
    );
    for entry in &log {
        let signing = entry["action"].as_str().unwrap().starts_with("signing_key.");
        assert_eq!(entry["tenantId"], if signing { Value::Null } else { json!("acme") }, "{entry}");
        assert!(entry["id"].as_str().unwrap().starts_with("aud_"));
        let at = keygate::time::parse_rfc3339(entry["at"].as_str().unwrap()).unwrap();
        assert!((keygate::time::now_millis() - at) < 60_000, "{entry}");
        let creates = entry["action"].as_str().unwrap().ends_with(".create")
            || ["key.import", "signing_key.rotate"].contains(&entry["action"].as_str().unwrap());
        let deletes = entry["action"].as_str().unwrap().ends_with(".delete");
        assert_eq!(entry["before"].is_null(), creates, "before is null for a create: {entry}");
        assert_eq!(entry["after"].is_null(), deletes, "after is null for a delete: {entry}");
    }
    let entry = |action: &str| log.iter().find(|entry| entry["action"] == action).unwrap().clone();

    // The wire objects, as the admin API shows them.
    let mut created = key.clone();
    created.as_object_mut().unwrap().remove("secret");
    assert_eq!(entry("key.create")["after"], created, "a key as GET shows it, without its secret");
    assert_eq!(entry("tenant.update")["before"]["status"], "active");
    assert_eq!(entry("tenant.update")["after"]["status"], "suspended");
    assert_eq!(entry("key.update")["before"]["name"], "web");
    assert_eq!(entry("key.update")["after"]["name"], "web-2");
    let roll = entry("key.roll");
    assert_eq!(roll["before"]["prefix"], key["prefix"]);
    assert_eq!(roll["after"]["prefix"], rolled.body["data"]["prefix"]);
    assert_eq!(roll["after"]["rolledSecrets"][0]["prefix"], key["prefix"], "the earlier secret is shown");
    assert_eq!(entry("key.revoke")["before"]["revokedAt"], Value::Null);
    assert!(entry("key.revoke")["after"]["revokedAt"].is_string());
    assert_eq!(entry("key.delete")["before"]["name"], "old", "the newest delete is the imported key's");
    assert_eq!(entry("tenant.delete")["before"]["name"], "Acme");
    assert_eq!(entry("signing_key.retire")["before"]["retiredAt"], Value::Null);
    assert!(entry("signing_key.retire")["after"]["retiredAt"].is_string());
    assert_eq!(entry("signing_key.rotate")["after"], rotated.body["data"]);

    // Never a secret or a hash.
    let text = serde_json::to_string(&log).unwrap();
    for secret in [&secret, &new_secret, &import_hash.to_owned()] {
        assert!(!text.contains(secret.as_str()), "the log holds no secret or hash");
    }
    assert!(!text.contains("secret\""), "no field named secret: {text}");
}

#[tokio::test]
async fn a_write_that_fails_appends_nothing_and_a_read_token_writes_nothing() {
    let app = spawn_with(with_named_tokens).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, _) = app.create_key("acme", json!({ "name": "web", "scopes": [] })).await;
    let id = key["id"].as_str().unwrap();
    let before = entries(&app, "", 100).await;

    let refused = [
        (Method::POST, "/admin/v1/tenants".to_owned(), Some(json!({ "id": "acme", "name": "Again" })), 409),
        (Method::PATCH, "/admin/v1/tenants/acme".to_owned(), Some(json!({ "status": "gone" })), 400),
        (Method::PATCH, "/admin/v1/keys/key_nosuchkey".to_owned(), Some(json!({ "name": "x" })), 404),
        (Method::DELETE, "/admin/v1/tenants/acme".to_owned(), None, 409),
        (Method::POST, format!("/admin/v1/keys/{id}/roll"), Some(json!({ "overlapSeconds": -1 })), 400),
        (Method::POST, "/admin/v1/signing-keys/nosuchkid/retire".to_owned(), None, 404),
    ];
    for (method, path, body, status) in refused {
        let seen = app.admin_request(method, &path, body).await;
        assert_eq!(seen.status, status, "{path}: {}", seen.body);
    }

    // `support` reads everything and writes nothing: 403 ADMIN_READ_ONLY, and nothing changed.
    for path in ["/admin/v1/tenants", "/admin/v1/audit", &format!("/admin/v1/keys/{id}")] {
        assert_eq!(as_token(&app, SUPPORT_TOKEN, Method::GET, path, None).await.status, 200, "{path}");
    }
    let metrics = app.client.get(format!("{}/metrics", app.admin)).bearer_auth(SUPPORT_TOKEN).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let writes = [
        (Method::POST, "/admin/v1/tenants".to_owned(), Some(json!({ "id": "globex", "name": "Globex" }))),
        (Method::PATCH, format!("/admin/v1/keys/{id}"), Some(json!({ "name": "renamed" }))),
        (Method::POST, format!("/admin/v1/keys/{id}/revoke"), None),
        (Method::DELETE, format!("/admin/v1/keys/{id}"), None),
        (Method::POST, "/admin/v1/signing-keys".to_owned(), None),
        (Method::POST, "/admin/v1/no/such/path".to_owned(), None),
    ];
    for (method, path, body) in writes {
        let seen = as_token(&app, SUPPORT_TOKEN, method, &path, body).await;
        seen.assert_error(403, "ADMIN_READ_ONLY");
        assert!(!seen.body.to_string().contains(SUPPORT_TOKEN), "an error never shows the token");
    }
    assert_eq!(app.admin_request(Method::GET, "/admin/v1/tenants/globex", None).await.status, 404);
    let shown = app.admin_request(Method::GET, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!((shown.body["data"]["name"].as_str(), shown.body["data"]["revokedAt"].is_null()), (Some("web"), true));
    as_token(&app, "not-a-token-0123456789", Method::GET, "/admin/v1/audit", None)
        .await
        .assert_error(401, "ADMIN_TOKEN_INVALID");

    assert_eq!(actions(&entries(&app, "", 100).await), actions(&before), "no entry without its change");

    // A reload replaces the named tokens at once.
    app.reload(|config| config.admin.tokens.retain(|token| token.name != "support")).await;
    as_token(&app, SUPPORT_TOKEN, Method::GET, "/admin/v1/audit", None).await.assert_error(401, "ADMIN_TOKEN_INVALID");
    assert_eq!(as_token(&app, OPS_TOKEN, Method::GET, "/admin/v1/audit", None).await.status, 200);
}

#[tokio::test]
async fn the_log_is_filtered_by_tenant_target_action_and_time_and_paged_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for tenant in ["acme", "globex"] {
        app.create_tenant(json!({ "id": tenant, "name": tenant })).await;
        for n in 0..3 {
            let (key, _) = app.create_key(tenant, json!({ "name": format!("k{n}"), "scopes": [] })).await;
            ids.push(key["id"].as_str().unwrap().to_owned());
        }
    }
    app.patch_key(&ids[1], json!({ "name": "renamed" })).await;
    app.patch_tenant("globex", json!({ "name": "Globex" })).await;

    let all = entries(&app, "", 100).await;
    assert_eq!(all.len(), 11, "1 signing key, 2 tenants, 6 keys, 2 updates");
    let mut seen_ids: Vec<&str> = all.iter().map(|entry| entry["id"].as_str().unwrap()).collect();
    let paged = entries(&app, "", 2).await;
    assert_eq!(paged, all, "pages of 2 give the same entries in the same order");
    let times: Vec<i64> =
        all.iter().map(|e| keygate::time::parse_rfc3339(e["at"].as_str().unwrap()).unwrap()).collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first");
    seen_ids.sort_unstable();
    seen_ids.dedup();
    assert_eq!(seen_ids.len(), all.len(), "each entry once");

    let acme = entries(&app, "tenantId=acme", 2).await;
    assert_eq!(acme.len(), 5, "acme and its 3 keys' creation, and the rename of one");
    assert!(acme.iter().all(|entry| entry["tenantId"] == "acme"));
    let of_key = entries(&app, &format!("targetId={}", ids[1]), 100).await;
    assert_eq!(actions(&of_key), ["key.update", "key.create"]);
    let creates = entries(&app, "action=key.create&tenantId=globex", 100).await;
    assert_eq!(creates.len(), 3);
    let updates = entries(&app, "action=tenant.update", 100).await;
    assert_eq!(actions(&updates), ["tenant.update"]);

    // `since` and `until` include their bounds.
    let middle = &all[5];
    let at = middle["at"].as_str().unwrap();
    let millis = |entry: &Value| keygate::time::parse_rfc3339(entry["at"].as_str().unwrap()).unwrap();
    let encoded = |time: &str| time.replace(':', "%3A").replace('+', "%2B");
    let since = entries(&app, &format!("since={}", encoded(at)), 3).await;
    assert!(since.iter().all(|e| millis(e) >= millis(middle)) && since.contains(middle));
    let until = entries(&app, &format!("until={}", encoded(at)), 3).await;
    assert!(until.iter().all(|e| millis(e) <= millis(middle)) && until.contains(middle));
    assert_eq!(since.len() + until.len(), all.len() + all.iter().filter(|e| e["at"] == middle["at"]).count());
    let future = entries(&app, "since=2999-01-01T00%3A00%3A00Z", 100).await;
    assert!(future.is_empty());

    // Bad filters: 400, each field named.
    let seen = app
        .admin_request(
            Method::GET,
            "/admin/v1/audit?action=key.explode&since=yesterday&until=2026-13-01T00:00:00Z&cursor=key_1&limit=0",
            None,
        )
        .await;
    seen.assert_error(400, "VALIDATION_ERROR");
    let mut fields: Vec<&str> =
        seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["action", "cursor", "limit", "since", "until"], "{}", seen.body);
}

#[tokio::test]
async fn no_api_changes_or_deletes_an_entry_and_a_deleted_key_keeps_its_entries() {
    let app = spawn_app().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (key, _) = app.create_key("acme", json!({ "name": "web", "scopes": [] })).await;
    let id = key["id"].as_str().unwrap();
    let first = entries(&app, "", 100).await[0]["id"].as_str().unwrap().to_owned();
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let seen = app.admin_request(method.clone(), "/admin/v1/audit", Some(json!({}))).await;
        seen.assert_error(405, "METHOD_NOT_ALLOWED");
    }
    for method in [Method::GET, Method::DELETE, Method::PATCH] {
        let seen = app.admin_request(method, &format!("/admin/v1/audit/{first}"), None).await;
        seen.assert_error(404, "NOT_FOUND");
    }
    assert_eq!(app.admin_request(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await.status, 204);
    let kept = entries(&app, &format!("targetId={id}"), 100).await;
    assert_eq!(actions(&kept), ["key.delete", "key.create"]);
}

/// The OS user this test runs as, as `id -un` prints it.
fn os_user() -> String {
    let output = std::process::Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_on_the_store_records_its_os_user_and_through_the_api_the_token_s_name() {
    let app = spawn_app().await;
    let store = Via::Store(&app.test_store);
    store.ok(&["tenant", "create", "--id", "acme", "--name", "Acme"]);
    Via::Api(&app).ok(&["tenant", "update", "acme", "--status", "suspended"]);

    let listed = Via::Api(&app).ok(&["audit", "--tenant", "acme"]);
    let actors: Vec<&str> = listed.as_array().unwrap().iter().map(|entry| entry["actor"].as_str().unwrap()).collect();
    assert_eq!(actors, ["admin".to_owned(), format!("cli:{}", os_user())]);
    let updates = store.ok(&["audit", "--action", "tenant.update", "--limit", "1"]);
    assert_eq!(actions(updates.as_array().unwrap()), ["tenant.update"]);
    let bad = store.run(&["audit", "--action", "nope"]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("action"), "{}", bad.stderr);
}

#[tokio::test]
async fn config_check_and_debug_output_never_show_a_named_token() {
    let store = TestStore::new().await;
    let config = common::process::write_config(
        &store,
        "tokens",
        &format!(
            "[admin]\naudit_retention_days = 30\n[[admin.tokens]]\nname = \"support\"\ntoken = \"{SUPPORT_TOKEN}\"\nrole = \"read\"\n"
        ),
    );
    let ran = Via::Store(&store).run(&["--config", config.to_str().unwrap(), "config", "check"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout_text.contains("name = \"support\"") && ran.stdout_text.contains("<redacted>"));
    assert!(!ran.stdout_text.contains(SUPPORT_TOKEN) && !ran.stderr.contains(SUPPORT_TOKEN));
    let loaded = Config::load(Some(&config), std::iter::empty()).unwrap();
    assert!(!format!("{loaded:?}").contains(SUPPORT_TOKEN), "Debug leaves the token out");

    // A bad entry is named by its place, never by its token.
    let bad = common::process::write_config(
        &store,
        "bad",
        &format!("[[admin.tokens]]\nname = \"admin\"\ntoken = \"{SUPPORT_TOKEN}\"\nrole = \"read\"\n"),
    );
    let ran = Via::Store(&store).run(&["--config", bad.to_str().unwrap(), "config", "check"]);
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("admin.tokens[0].name"), "{}", ran.stderr);
    assert!(!ran.stderr.contains(SUPPORT_TOKEN));
}

/// Entries older than `admin.audit_retention_days` are pruned; newer ones stay. The old entries
/// are made by one keygate, then dated three days back in the store (a keygate under a clock
/// three days behind cannot reach PostgreSQL over TLS: its certificate is not valid yet), and a
/// second keygate with a retention of two days starts on the store.
#[tokio::test]
async fn the_retention_prunes_entries_older_than_its_days_and_keeps_the_rest() {
    const DAY_MS: i64 = 86_400_000;
    let store = TestStore::new().await;
    let first = spawn_in(std::sync::Arc::clone(&store), |_| {}).await;
    first.create_tenant(json!({ "id": "old", "name": "Old" })).await;
    first.stop().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&store.url).await.unwrap();
    let dated = sqlx::query("UPDATE audit_log SET made_at = made_at - $1").bind(3 * DAY_MS).execute(&pool).await;
    assert_eq!(dated.unwrap().rows_affected(), 2, "the first signing key's entry and the tenant's");
    pool.close().await;

    let app = spawn_in(std::sync::Arc::clone(&store), |config| config.admin.audit_retention_days = 2).await;
    app.create_tenant(json!({ "id": "new", "name": "New" })).await;
    let mut left = Vec::new();
    for _ in 0..50 {
        left = entries(&app, "", 100).await;
        if left.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(actions(&left), ["tenant.create"], "{left:?}");
    assert_eq!(left[0]["targetId"], "new");
    let old_tenant = app.admin_request(Method::GET, "/admin/v1/tenants/old", None).await;
    assert_eq!(old_tenant.status, 200, "the retention prunes entries, never what they recorded");
}
