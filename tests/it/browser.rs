//! A real browser (Debian's headless Chromium, driven by `e2e/open-page.mjs`): a page from an
//! allowed origin mints a session and makes a proxied write, reading the JSON body and
//! `X-RateLimit-Remaining` through CORS; a page from another origin can read neither.
//!
//! Needs `/usr/bin/chromium` and `e2e/node_modules` (`scripts/test` installs both). Without
//! them this test fails, saying so: it never skips.

use crate::common;

use common::chromium::{open_in_chromium, page_server};
use common::*;
use serde_json::json;

/// The page's script: mint a session, then write through the gateway with it.
pub(crate) fn page(keygate: &str, secret: &str) -> String {
    format!(
        r#"<!doctype html><title>keygate e2e</title><script>
(async () => {{
  const out = {{}};
  try {{
    const auth = {{ "Authorization": "Bearer {secret}" }};
    const mint = await fetch("{keygate}/api/v1/sessions", {{ method: "POST", headers: auth }});
    out.mintStatus = mint.status;
    const minted = await mint.json();
    out.expiresAt = minted.data.expiresAt;
    const write = await fetch("{keygate}/api/v1/orders", {{
      method: "POST",
      headers: {{ ...auth, "X-Session-Token": minted.data.sessionToken, "Content-Type": "application/json" }},
      body: JSON.stringify({{ item: "tea" }}),
    }});
    out.writeStatus = write.status;
    out.remaining = write.headers.get("X-RateLimit-Remaining");
    out.requestId = write.headers.get("X-Request-Id");
    out.writeBody = await write.json();
  }} catch (error) {{
    out.error = String(error);
  }}
  window.result = out;
}})();
</script>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_an_allowed_origin_mints_and_writes_and_another_cannot_read() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    // Pages are served first, so the key's allowlist can name the allowed page's origin.
    let (allowed_origin, allowed_html) = page_server().await;
    let (other_origin, other_html) = page_server().await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })).await;
    let (_, secret) = app
        .create_key(
            "acme",
            json!({ "name": "web", "scopes": ["sessions:create", "orders:write"], "allowedOrigins": [allowed_origin], "rateLimit": { "limit": 50, "windowSeconds": DAY } }),
        )
        .await;
    *allowed_html.lock().unwrap() = page(&app.public, &secret);

    let result = open_in_chromium(format!("{allowed_origin}/")).await;
    assert!(result.get("error").is_none(), "{result}");
    assert_eq!(result["mintStatus"], 201, "{result}");
    assert!(result["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(result["writeStatus"], 200, "{result}");
    assert_eq!(result["writeBody"], json!({ "ok": true, "bytes": 14 }));
    assert_eq!(result["remaining"], "48", "X-RateLimit-Remaining is readable through CORS");
    assert!(result["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    let received = upstream.last();
    assert_eq!(received.header("x-keygate-channel"), Some("browser"));
    assert_eq!(received.header("origin"), Some(allowed_origin.as_str()));
    assert_eq!(received.body.as_ref(), br#"{"item":"tea"}"#);

    *other_html.lock().unwrap() = page(&app.public, &secret);
    let result = open_in_chromium(format!("{other_origin}/")).await;
    assert!(result["error"].as_str().is_some_and(|e| e.contains("Failed to fetch")), "{result}");
    assert!(result.get("mintStatus").is_none(), "the other origin could not read the answer");
    assert_eq!(upstream.count(), 1, "nothing from the other origin reached the upstream");
}
