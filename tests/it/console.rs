//! The admin console (SPEC §15), in Debian's headless Chromium against a real keygate: an
//! operator signs in, creates a tenant and keys, copies a secret shown once and uses it on the
//! public listener, edits, rolls, revokes and deletes, reads the usage just made and the audit
//! log of it all; then a `read` token is refused every change. `e2e/console.mjs` drives the
//! browser by the accessible names the contract fixes; every assertion is here. The run writes
//! the screenshots `docs/console.md` shows.
//!
//! Needs `/usr/bin/chromium` and `e2e/node_modules` (`scripts/test` installs both). Without
//! them this test fails, saying so: it never skips.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use keygate::config::{AdminRole, AdminTokenConfig};
use reqwest::Method;
use serde_json::{Value, json};

const READ_TOKEN: &str = "support-token-0123456789abc";

/// Runs `e2e/console.mjs` with `args`; what it saw.
async fn walk_console(args: Value) -> Value {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e");
    assert!(
        Path::new("/usr/bin/chromium").exists() && e2e.join("node_modules/playwright-core").exists(),
        "the console test needs Debian's chromium and e2e/node_modules: run scripts/test (it installs both)"
    );
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node").arg(e2e.join("console.mjs")).arg(args.to_string()).output().expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "driver failed: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.trim()).expect("the driver's observations as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_s_files_are_served_without_a_token_under_a_strict_policy() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let moved = client.get(format!("{}/console", app.admin)).send().await.unwrap();
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/console/");
    let mut html = String::new();
    for (path, kind) in
        [("/console/", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")]
    {
        let response = client.get(format!("{}{path}", app.admin)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        let policy = header("content-security-policy");
        assert!(policy.contains("default-src 'none'") && policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        assert_eq!(header("x-content-type-options"), "nosniff");
        if path == "/console/" {
            html = response.text().await.unwrap();
        }
    }
    assert_eq!(html.matches("<script").count(), html.matches("<script src=\"console.js\"").count(), "no inline script");
    assert!(!html.contains("style="), "no inline style");
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from another host");
    // Only the files are open: the API, and any other path, still want a token.
    let api = Seen::from(client.get(format!("{}/admin/v1/tenants", app.admin)).send().await.unwrap()).await;
    api.assert_error(401, "ADMIN_TOKEN_INVALID");
    let other = Seen::from(client.get(format!("{}/console/secrets.json", app.admin)).send().await.unwrap()).await;
    other.assert_error(401, "ADMIN_TOKEN_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_customer_s_keys_from_the_console_and_a_read_token_changes_nothing() {
    let (app, upstream) = spawn_gateway(|config| {
        config.usage.flush_seconds = 1;
        config.admin.tokens.push(AdminTokenConfig {
            name: "support".to_owned(),
            token: READ_TOKEN.to_owned(),
            role: AdminRole::Read,
        });
    })
    .await;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&shots).unwrap();
    let seen = walk_console(json!({
        "console": format!("{}/console/", app.admin),
        "public": app.public,
        "adminToken": ADMIN_TOKEN,
        "readToken": READ_TOKEN,
        "shots": shots,
    }))
    .await;
    assert!(seen.get("error").is_none(), "the walk stopped: {}", seen["error"]);
    assert_eq!(seen["pageErrors"], json!([]), "no script error and no policy violation");

    // Signed in from the keyboard; the token in no URL, cookie or localStorage.
    assert_eq!(seen["focusedFirst"], "Admin token");
    assert_eq!(seen["wrongToken"], "a valid admin token is required");
    assert_eq!(seen["tokenInLocalStorage"], 0);
    assert_eq!(seen["cookies"], 0);
    assert!(!seen["urlAfterSignIn"].as_str().unwrap().contains(ADMIN_TOKEN));
    assert_eq!(seen["tokenAfterSignOut"], 0, "signing out forgets the token");

    // The API's own words, beside the field they name.
    assert!(seen["badTenantId"].as_str().unwrap().contains("must be 1 to 64 characters"), "{}", seen["badTenantId"]);
    assert_eq!(seen["badTenantIdInvalid"], "true");
    assert!(seen["badOrigin"].as_str().unwrap().contains("must look like https://host"), "{}", seen["badOrigin"]);
    assert!(seen["badSince"].as_str().unwrap().contains("RFC 3339"), "{}", seen["badSince"]);
    assert!(seen["tenantSummary"].as_str().unwrap().contains("0 of 1000 a month"), "{}", seen["tenantSummary"]);

    // The secret: shown once, copied, working; gone after a reload.
    let secret = seen["secret"].as_str().unwrap();
    assert!(secret.starts_with("kg_"), "{secret}");
    assert_eq!(seen["clipboard"], secret, "Copy put the secret on the clipboard");
    assert_eq!(
        seen["firstCalls"],
        json!([{ "status": 200, "code": null }, { "status": 200, "code": null }, { "status": 200, "code": null }])
    );
    assert_eq!(seen["secretFieldsAfterReload"], 0);
    assert_eq!(seen["secretInPageAfterReload"], false);
    assert!(seen["keySummaryAfterEdit"].as_str().unwrap().contains("https://app.example.com"));

    // A key made while the operator moved on: the page they moved to was not redrawn under
    // their typing, and the secret waited for the tenant's page.
    let elsewhere = &seen["whileElsewhere"];
    assert_eq!(elsewhere["redraws"], 0, "{elsewhere}");
    assert_eq!(elsewhere["typed"], "https://app.example.com not-an-origin");
    assert_eq!(elsewhere["title"], "Key old-integration created");
    let late = elsewhere["secret"].as_str().unwrap_or("");
    assert!(late.starts_with("kg_") && late != secret, "{late}");

    // Rolled with an overlap: both secrets work; revoked: both refused.
    assert_eq!(seen["rolledSecretDiffers"], true);
    assert_eq!(
        seen["afterRoll"],
        json!({ "earlier": { "status": 200, "code": null }, "current": { "status": 200, "code": null } })
    );
    assert_eq!(seen["earlierSecrets"], 1);
    assert!(seen["revokeDialog"].as_str().unwrap().contains("Revoke web?"), "{}", seen["revokeDialog"]);
    assert_eq!(seen["keyStateAfterRevoke"], "revoked");
    let revoked = json!({ "status": 401, "code": "API_KEY_REVOKED" });
    assert_eq!(seen["afterRevoke"], json!({ "earlier": revoked, "current": revoked }));
    assert_eq!(upstream.count(), 5, "the five accepted requests reached the upstream, the refused ones did not");

    // Deleted from the keyboard: focus starts on Cancel, the confirmation is one Tab away.
    assert_eq!(seen["focusInDialog"], "Cancel");
    assert_eq!(seen["focusAfterTab"], "Delete");
    assert_eq!(seen["keysAfterDelete"].as_array().unwrap().len(), 2, "{}", seen["keysAfterDelete"]);
    assert!(!seen["keysAfterDelete"].to_string().contains("old-integration"));
    let summary = seen["tenantSummaryAfterEdit"].as_str().unwrap();
    assert!(summary.contains("past_due") && summary.contains("of 2000 a month"), "{summary}");

    // The usage table holds the API's numbers, and the chart draws them.
    let key_id = seen["keyPageUrl"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let usage = &seen["usage"];
    let hour_head: Vec<String> = serde_json::from_value(usage["hourHead"].clone()).unwrap();
    let ok_column = hour_head.iter().position(|head| head == "OK").expect("an OK column");
    let table_ok: u64 = usage["hourRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[ok_column].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(table_ok, 5, "{usage}");
    let day_ok: u64 =
        usage["dayRows"].as_array().unwrap().iter().map(|row| row[2].as_str().unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(day_ok, 5, "{usage}");
    let hour = now_seconds() / 3600 * 3600;
    let api = app
        .admin_request(
            Method::GET,
            &format!(
                "/admin/v1/keys/{key_id}/usage?from={}&to={}&granularity=hour",
                rfc3339(hour - 47 * 3600),
                rfc3339(hour + 3600)
            ),
            None,
        )
        .await;
    let api_ok: u64 = api.body["data"].as_array().unwrap().iter().filter_map(|b| b["outcomes"]["OK"].as_u64()).sum();
    assert_eq!(api_ok, table_ok, "the console shows the API's count");
    assert!(usage["bars"].as_u64().unwrap() >= 2, "a bar per hour and per day: {usage}");
    assert!(usage["chartLabels"][0].as_str().unwrap().contains("5 requests: OK 5"), "{usage}");

    // Signing keys rotated and the earlier retired.
    assert_eq!(seen["signingBefore"], 1);
    assert_eq!(seen["signingAfterRotate"], 2);
    let retired = seen["signingRows"].as_array().unwrap().iter().filter(|row| row[4] != "—").count();
    assert_eq!(retired, 1, "{}", seen["signingRows"]);

    // The audit log lists each change, newest first, under the token's name; filtered by action.
    assert_eq!(
        seen["auditActions"],
        json!([
            "signing_key.retire",
            "signing_key.rotate",
            "tenant.update",
            "key.delete",
            "key.revoke",
            "key.roll",
            "key.update",
            "key.create",
            "key.create",
            "key.create",
            "tenant.create",
            // The first signing key, made by the instance at its start.
            "signing_key.rotate"
        ])
    );
    assert_eq!(
        seen["auditActors"],
        json!(["admin", "keygate"]),
        "the token's name; the instance for its first signing key"
    );
    assert_eq!(seen["filteredActions"], json!(["key.revoke"]));

    // The read token: every change refused in the API's words, and nothing changed.
    let refusals = seen["readRefusals"].as_object().expect("each change tried");
    assert_eq!(refusals.len(), 10, "{refusals:?}");
    for (change, message) in refusals {
        assert_eq!(message, "this admin token may only read: it has role read", "{change}");
    }
    let entries = app.admin_request(Method::GET, "/admin/v1/audit?limit=100", None).await;
    assert_eq!(entries.body["data"].as_array().unwrap().len(), 12, "no change made by the read token");
    app.admin_request(Method::GET, "/admin/v1/tenants/readers", None).await.assert_error(404, "NOT_FOUND");

    // Nothing was asked of another host, the whole run long.
    let origin = app.admin.clone();
    let elsewhere: Vec<&Value> =
        seen["requests"].as_array().unwrap().iter().filter(|url| !url.as_str().unwrap().starts_with(&origin)).collect();
    assert!(elsewhere.is_empty(), "requests to another host: {elsewhere:?}");
    for name in ["tenants", "tenant", "key", "audit", "signing-keys"] {
        for width in [400, 1400] {
            assert!(shots.join(format!("{name}-{width}.png")).exists(), "{name}-{width}.png");
        }
    }
}
