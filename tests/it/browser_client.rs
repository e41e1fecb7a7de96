//! The browser client (`clients/js/keygate.js`) in a real browser — Debian's headless Chromium,
//! driven by `e2e/open-page.mjs` — against a real keygate and a recording upstream: one mint
//! for concurrent writes, renewal across short sessions and after a retired signing key,
//! the distinct error of a disallowed origin, and 429s waited out or aborted.
//!
//! One test, its scenarios in turn, run alone ([`common::metrics_alone`]): keygate's metrics
//! are per process, and the mint count must not see another test's mints.

use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse};
use common::chromium::open_in_chromium;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// A page origin: `/` serves the HTML put in its slot, `/keygate.js` the client, and
/// `/rotate?kid=…` rotates keygate's signing key and retires `kid`, as an operator would.
struct PageServer {
    origin: String,
    html: Arc<Mutex<String>>,
}

#[derive(Clone)]
struct PageState {
    html: Arc<Mutex<String>>,
    admin: String,
}

async fn page_server(admin: &str) -> PageServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let state = PageState { html: Arc::default(), admin: admin.to_owned() };
    let html = Arc::clone(&state.html);
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(
                |State(state): State<PageState>| async move { Html(state.html.lock().unwrap().clone()) },
            ),
        )
        .route(
            "/keygate.js",
            axum::routing::get(|| async {
                let module =
                    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/keygate.js"));
                ([("content-type", "text/javascript")], module.expect("clients/js/keygate.js"))
            }),
        )
        .route("/rotate", axum::routing::post(rotate))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    PageServer { origin, html }
}

async fn rotate(
    State(state): State<PageState>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    let client = reqwest::Client::new();
    let admin = |method: Method, path: String| {
        client.request(method, format!("{}{path}", state.admin)).bearer_auth(ADMIN_TOKEN).send()
    };
    let rotated = admin(Method::POST, "/admin/v1/signing-keys".to_owned()).await.unwrap().status();
    let retired =
        admin(Method::POST, format!("/admin/v1/signing-keys/{}/retire", query["kid"])).await.unwrap().status();
    assert_eq!((rotated.as_u16(), retired.as_u16()), (201, 200));
    "rotated"
}

/// A page whose module script imports the client and stores in `window.result` what `body`
/// returns, or `{thrown: …}` when it throws. `body` sees `KG` (keygate's URL), `KEY` (the API
/// key), `createClient`, and `seen` with `fetch`, a `fetch` that records each answer's status.
fn page(keygate: &str, secret: &str, body: &str) -> String {
    format!(
        r#"<!doctype html><title>keygate client e2e</title><script type="module">
import {{ createClient, KeygateError, KeygateNetworkError }} from "/keygate.js";
const KG = "{keygate}", KEY = "{secret}";
const seen = {{ statuses: [], mints: 0 }};
seen.fetch = async (url, init) => {{
  if (url.endsWith("/api/v1/sessions")) seen.mints++;
  const response = await fetch(url, init);
  seen.statuses.push(response.status);
  return response;
}};
const describe = (e) => ({{
  name: e?.name, code: e?.code, status: e?.status, message: String(e?.message ?? e),
  requestId: e?.requestId, isKeygateError: e instanceof KeygateError, isNetworkError: e instanceof KeygateNetworkError,
}});
window.result = await (async () => {{
  try {{ {body} }} catch (e) {{ return {{ thrown: describe(e), seen }}; }}
}})();
</script>"#
    )
}

const MINTS: &str = "keygate_sessions_minted_total";

/// A key of tenant `acme` (made if missing) for pages at `origin`, with `rate_limit` if any.
async fn page_key(app: &TestApp, origin: &str, rate_limit: Option<Value>) -> String {
    if app.admin_request(Method::GET, "/admin/v1/tenants/acme", None).await.status == 404 {
        app.create_tenant(json!({ "id": "acme", "name": "Acme", "modules": ["orders"] })).await;
    }
    let mut body = json!({
        "name": "web", "scopes": ["sessions:create", "orders:read", "orders:write"], "allowedOrigins": [origin],
    });
    if let Some(rate_limit) = rate_limit {
        body["rateLimit"] = rate_limit;
    }
    app.create_key("acme", body).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_in_chromium() {
    let _alone = metrics_alone().await;
    ten_concurrent_writes_from_a_fresh_page_mint_once().await;
    short_sessions_are_renewed_without_a_failed_request().await;
    a_retired_signing_key_is_renewed_once_and_a_second_refusal_is_a_keygate_error().await;
    a_disallowed_origin_gets_the_network_error_and_the_upstream_nothing().await;
    a_429_is_waited_out_and_an_abort_ends_the_wait_at_once().await;
}

async fn ten_concurrent_writes_from_a_fresh_page_mint_once() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let pages = page_server(&app.admin).await;
    let secret = page_key(&app, &pages.origin, None).await;
    *pages.html.lock().unwrap() = page(
        &app.public,
        &secret,
        r#"const api = createClient({ baseUrl: KG, apiKey: KEY, fetch: seen.fetch });
           const write = (i) => api.fetch("/api/v1/orders", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ i }) });
           const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => write(i).then((r) => r.status)));
           return { answers, seen, remaining: api.rateLimit?.remaining };"#,
    );
    let mints = app.metric(MINTS).await;
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    assert!(result.get("thrown").is_none(), "{result}");
    assert_eq!(result["answers"], json!(vec![200; 10]), "{result}");
    assert_eq!(app.metric(MINTS).await - mints, 1.0, "one mint for ten concurrent writes");
    assert_eq!(result["seen"]["mints"], 1);
    assert_eq!(upstream.count(), 10, "every write reached the upstream");
    assert!(upstream.received().iter().all(|r| r.header("x-keygate-channel") == Some("browser")));
    assert!(result["remaining"].is_number(), "the rate-limit figures are readable: {result}");
}

async fn short_sessions_are_renewed_without_a_failed_request() {
    let (app, upstream) = spawn_gateway(|c| c.sessions.ttl_seconds = 2).await;
    let pages = page_server(&app.admin).await;
    let secret = page_key(&app, &pages.origin, None).await;
    *pages.html.lock().unwrap() = page(
        &app.public,
        &secret,
        r#"const api = createClient({ baseUrl: KG, apiKey: KEY, fetch: seen.fetch });
           const started = Date.now(), answers = [];
           while (Date.now() - started < 5000) {
             answers.push((await api.fetch("/api/v1/orders", { method: "PATCH", body: "{}" })).status);
             await new Promise((resolve) => setTimeout(resolve, 200));
           }
           return { answers, seen };"#,
    );
    let mints = app.metric(MINTS).await;
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    assert!(result.get("thrown").is_none(), "{result}");
    let answers = result["answers"].as_array().unwrap();
    assert!(answers.len() >= 15 && answers.iter().all(|a| a == 200), "{result}");
    let statuses = result["seen"]["statuses"].as_array().unwrap();
    assert!(statuses.iter().all(|s| s == 200 || s == 201), "not one refused request, renewals included: {result}");
    let minted = app.metric(MINTS).await - mints;
    assert!(minted >= 4.0, "5 s of 2-second sessions take several mints: {minted}");
    assert_eq!(upstream.count(), answers.len());
}

async fn a_retired_signing_key_is_renewed_once_and_a_second_refusal_is_a_keygate_error() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let pages = page_server(&app.admin).await;
    let secret = page_key(&app, &pages.origin, None).await;
    // After the first write, an operator retires the key that signed its session: the next
    // write is refused once, renewed, and goes through.
    let kid =
        r#"const kid = (token) => JSON.parse(atob(token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/"))).kid;"#;
    *pages.html.lock().unwrap() = page(
        &app.public,
        &secret,
        &format!(
            r#"{kid}
           let token;
           const api = createClient({{ baseUrl: KG, apiKey: KEY, fetch: async (url, init) => {{
             token = new Headers(init.headers).get("X-Session-Token") ?? token;
             return seen.fetch(url, init);
           }} }});
           const first = (await api.fetch("/api/v1/orders", {{ method: "POST", body: "1" }})).status;
           await fetch("/rotate?kid=" + kid(token), {{ method: "POST" }});
           const second = (await api.fetch("/api/v1/orders", {{ method: "POST", body: "2" }})).status;
           return {{ first, second, seen }};"#
        ),
    );
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    assert!(result.get("thrown").is_none(), "{result}");
    assert_eq!((result["first"].clone(), result["second"].clone()), (json!(200), json!(200)), "{result}");
    assert_eq!(result["seen"]["statuses"], json!([201, 200, 401, 201, 200]), "refused once, renewed once");
    assert_eq!(upstream.count(), 2);

    // Every session retired as soon as it is minted: the one renewal is refused too, and that
    // second refusal is the caller's, as a KeygateError.
    *pages.html.lock().unwrap() = page(
        &app.public,
        &secret,
        &format!(
            r#"{kid}
           const api = createClient({{ baseUrl: KG, apiKey: KEY, fetch: async (url, init) => {{
             const response = await seen.fetch(url, init);
             if (url.endsWith("/api/v1/sessions")) {{
               const {{ data }} = await response.clone().json();
               await fetch("/rotate?kid=" + kid(data.sessionToken), {{ method: "POST" }});
             }}
             return response;
           }} }});
           await api.fetch("/api/v1/orders", {{ method: "POST", body: "3" }});
           return {{ unexpected: "success", seen }};"#
        ),
    );
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    let thrown = &result["thrown"];
    assert_eq!(thrown["isKeygateError"], true, "{result}");
    assert_eq!((thrown["code"].as_str(), thrown["status"].as_u64()), (Some("SESSION_INVALID"), Some(401)));
    assert!(thrown["requestId"].as_str().is_some_and(|id| !id.is_empty()), "X-Request-Id is readable: {result}");
    assert_eq!(result["seen"]["statuses"], json!([201, 401, 201, 401]), "one retry, never a loop");
    assert_eq!(upstream.count(), 2, "no refused write reached the upstream");
}

async fn a_disallowed_origin_gets_the_network_error_and_the_upstream_nothing() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let allowed = page_server(&app.admin).await;
    let other = page_server(&app.admin).await;
    let secret = page_key(&app, &allowed.origin, None).await;
    *other.html.lock().unwrap() = page(
        &app.public,
        &secret,
        r#"const api = createClient({ baseUrl: KG, apiKey: KEY });
           await api.fetch("/api/v1/orders", { method: "POST", body: "{}" });
           return { unexpected: "success" };"#,
    );
    let mints = app.metric(MINTS).await;
    let result = open_in_chromium(format!("{}/", other.origin)).await;
    assert_eq!(result["thrown"]["name"], "KeygateNetworkError", "{result}");
    assert_eq!(result["thrown"]["isNetworkError"], true);
    assert_eq!(app.metric(MINTS).await, mints, "no session for another origin");
    assert_eq!(upstream.count(), 0, "the upstream saw nothing from the other origin");
}

async fn a_429_is_waited_out_and_an_abort_ends_the_wait_at_once() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let pages = page_server(&app.admin).await;
    // One request per 2-second window: of three reads in a row at least one meets a 429.
    let per_window = page_key(&app, &pages.origin, Some(json!({ "limit": 1, "windowSeconds": 2 }))).await;
    *pages.html.lock().unwrap() = page(
        &app.public,
        &per_window,
        r#"const api = createClient({ baseUrl: KG, apiKey: KEY, fetch: seen.fetch });
           const started = Date.now(), answers = [];
           for (let i = 0; i < 3; i++) answers.push((await api.fetch("/api/v1/orders")).status);
           return { answers, seen, elapsed: Date.now() - started, rateLimit: api.rateLimit };"#,
    );
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    assert!(result.get("thrown").is_none(), "{result}");
    assert_eq!(result["answers"], json!([200, 200, 200]), "{result}");
    let statuses = result["seen"]["statuses"].as_array().unwrap();
    assert!(statuses.windows(2).any(|pair| pair == [json!(429), json!(200)]), "a 429, then its retry: {result}");
    assert!(result["elapsed"].as_u64().unwrap() >= 900, "Retry-After (1 s or more) was waited out: {result}");
    assert_eq!(result["rateLimit"]["limit"], 1);
    assert_eq!(upstream.count(), 3);

    // A day's window: its Retry-After is hours, waited out (the bound allows it) until aborted.
    let per_day = page_key(&app, &pages.origin, Some(json!({ "limit": 1, "windowSeconds": DAY }))).await;
    *pages.html.lock().unwrap() = page(
        &app.public,
        &per_day,
        r#"const api = createClient({ baseUrl: KG, apiKey: KEY, fetch: seen.fetch, maxRetryAfterSeconds: 86400 });
           await api.fetch("/api/v1/orders");
           const controller = new AbortController();
           setTimeout(() => controller.abort(), 300);
           const started = Date.now();
           const outcome = await api.fetch("/api/v1/orders", { signal: controller.signal }).then(() => "success", (e) => e.name);
           return { outcome, waited: Date.now() - started, seen };"#,
    );
    let result = open_in_chromium(format!("{}/", pages.origin)).await;
    assert_eq!(result["outcome"], "AbortError", "{result}");
    assert!(result["waited"].as_u64().unwrap() < 2000, "rejected at once on abort: {result}");
    assert_eq!(result["seen"]["statuses"], json!([200, 429]));
    assert_eq!(upstream.count(), 4, "the refused and the aborted request never reached it");
}
