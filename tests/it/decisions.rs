//! Decisions for another proxy (SPEC §14), in process: `/forward-auth` as nginx, Caddy and
//! Traefik send it, `/ext-authz/…` as Envoy sends it, and `POST /v1/verify`. Every outcome of
//! SPEC §2 and §4 is asked of the gateway and of each decision endpoint, and the answers must
//! agree in status, code and headers. (tests/it/proxies.rs puts real nginx and Caddy in front.)

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

const DECISION_TOKEN: &str = "decision-token-0123456789";

/// A gateway with a decision listener, the gateway routes, and one route only decisions use.
pub(crate) async fn spawn_deciding(tweak: impl FnOnce(&mut keygate::config::Config)) -> (TestApp, upstream::Upstream) {
    spawn_routed(
        |upstream| {
            let mut routes = gateway_routes(upstream);
            let mut internal = routes[0].clone();
            internal.prefix = "/internal".to_owned();
            internal.upstream = None;
            routes.push(internal);
            routes
        },
        |config| {
            config.server.decision_listen = Some("127.0.0.1:0".parse().unwrap());
            tweak(config);
        },
    )
    .await
}

/// One original request: method, path (and query), headers.
#[derive(Clone)]
pub(crate) struct Asked {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Asked {
    pub(crate) fn new(name: &'static str, method: &'static str, path: &str) -> Self {
        Self { name, method, path: path.to_owned(), headers: Vec::new() }
    }

    pub(crate) fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn key(self, secret: &str) -> Self {
        self.with("authorization", format!("Bearer {secret}"))
    }

    pub(crate) fn origin(self) -> Self {
        self.with("origin", ORIGIN)
    }
}

/// What a client of the proxy would see of an answer: status, code, and the headers keygate
/// decides. `X-RateLimit-Remaining` is left out: each asking counts, so it goes down by one.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    status: u16,
    code: Option<String>,
    headers: Vec<(String, String)>,
}

const DECIDED_HEADERS: &[&str] = &[
    "www-authenticate",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-reset",
    "allow",
    "vary",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
];

pub(crate) fn answer(seen: &Seen) -> Answer {
    let headers = DECIDED_HEADERS
        .iter()
        .filter_map(|name| seen.header(name).map(|value| (name.to_string(), value.to_owned())))
        // Whole seconds to the reset: one asking may fall a second after another.
        .map(|(name, value)| if name == "retry-after" { (name, "present".to_owned()) } else { (name, value) })
        .collect();
    Answer { status: seen.status.as_u16(), code: seen.body["error"]["code"].as_str().map(str::to_owned), headers }
}

pub(crate) async fn through_gateway(app: &TestApp, asked: &Asked) -> Seen {
    let mut call = app.request(asked.method, &asked.path);
    for (name, value) in &asked.headers {
        call = call.header(name, value);
    }
    call.send().await
}

/// The decision listener's `path`, with `headers`.
async fn decide(app: &TestApp, method: &str, path: &str, headers: &[(&str, String)]) -> Seen {
    let url = format!("{}{path}", app.decision.as_ref().expect("a decision listener"));
    let mut request = app.client.request(Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    Seen::from(request.send().await.expect("decision request")).await
}

/// `/forward-auth` as Caddy and Traefik send it (or nginx, with `nginx_headers`).
async fn forward_auth(app: &TestApp, asked: &Asked, nginx_headers: bool) -> Seen {
    let (method_header, uri_header) =
        if nginx_headers { ("x-original-method", "x-original-uri") } else { ("x-forwarded-method", "x-forwarded-uri") };
    let mut headers: Vec<(&str, String)> = asked.headers.iter().map(|(n, v)| (*n, v.clone())).collect();
    headers.push((method_header, asked.method.to_owned()));
    headers.push((uri_header, asked.path.clone()));
    // nginx's auth_request subrequest, Caddy's forward_auth and Traefik's forwardAuth all ask
    // with GET, whatever the original's method.
    decide(app, "GET", "/forward-auth", &headers).await
}

/// `/ext-authz/<path>` as Envoy sends it: the original method, the path under the prefix.
async fn ext_authz(app: &TestApp, asked: &Asked) -> Seen {
    let headers: Vec<(&str, String)> = asked.headers.iter().map(|(n, v)| (*n, v.clone())).collect();
    decide(app, asked.method, &format!("/ext-authz{}", asked.path), &headers).await
}

/// Every outcome of SPEC §2 and §4, each with the state it needs.
pub(crate) async fn every_outcome(app: &TestApp) -> Vec<Asked> {
    let (_, good) = app.orders_key("acme", &["orders:read", "orders:write", "sessions:create"]).await;
    let (_, reader) = app
        .create_key("acme", json!({ "name": "reader", "scopes": ["orders:read"], "allowedOrigins": [ORIGIN] }))
        .await;
    let (revoked, revoked_secret) = app.create_key("acme", json!({ "name": "r", "scopes": [] })).await;
    app.admin_request(Method::POST, &format!("/admin/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()), None).await;
    let (expired, expired_secret) = app.create_key("acme", json!({ "name": "e", "scopes": [] })).await;
    app.patch_key(expired["id"].as_str().unwrap(), json!({ "expiresAt": "2020-01-01T00:00:00Z" })).await;
    let mut standing = Vec::new();
    for (tenant, patch) in [
        ("suspended", json!({ "status": "suspended" })),
        ("cancelled", json!({ "subscription": "cancelled" })),
        ("past-due", json!({ "subscription": "past_due" })),
        ("no-orders", json!({ "modules": [] })),
    ] {
        let (_, secret) = app.orders_key(tenant, &["orders:read"]).await;
        app.patch_tenant(tenant, patch).await;
        standing.push(secret);
    }
    let session = app.session(&good, ORIGIN).await;
    let orders = "/api/v1/orders/7?expand=lines";
    vec![
        Asked::new("no key", "GET", orders),
        Asked::new("malformed key", "GET", orders).key("kg_nope"),
        Asked::new("unknown key", "GET", orders).key("kg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA0000"),
        Asked::new("two Authorization headers", "GET", orders).key(&good).key(&good),
        Asked::new("revoked", "GET", orders).key(&revoked_secret),
        Asked::new("expired", "GET", orders).key(&expired_secret),
        Asked::new("suspended", "GET", orders).key(&standing[0]),
        Asked::new("cancelled", "GET", orders).key(&standing[1]),
        Asked::new("past due", "GET", orders).key(&standing[2]),
        Asked::new("module not enabled", "GET", orders).key(&standing[3]),
        Asked::new("origin not allowed", "GET", orders).key(&good).with("origin", "https://evil.example"),
        Asked::new("browser write without a session", "POST", "/api/v1/orders").key(&good).origin(),
        Asked::new("a bad session", "GET", orders).key(&good).origin().with("x-session-token", "e30.e30.e30"),
        Asked::new("scope not granted", "DELETE", "/api/v1/orders/7").key(&reader),
        Asked::new("allowed, server", "GET", orders).key(&good),
        Asked::new("allowed, browser write", "POST", "/api/v1/orders")
            .key(&good)
            .origin()
            .with("x-session-token", session),
        Asked::new("preflight, allowed origin", "OPTIONS", "/api/v1/orders")
            .origin()
            .with("access-control-request-method", "POST"),
        Asked::new("preflight, other origin", "OPTIONS", "/api/v1/orders")
            .with("origin", "https://evil.example")
            .with("access-control-request-method", "POST"),
        Asked::new("unknown path", "GET", "/nowhere").key(&good),
        Asked::new("other method", "PROPFIND", "/api/v1/search").key(&good),
        Asked::new("not in normal form", "GET", "/api/v1/orders;jsessionid=1").key(&good),
    ]
}

/// Every outcome gets the same status, code and headers from the gateway, from
/// `/forward-auth` (either spelling of its headers) and from `/ext-authz/…`; an allowed one is
/// 200 with the identity headers the upstream would have got, and nothing else reaches it.
#[tokio::test]
async fn every_outcome_is_decided_as_the_gateway_answers_it() {
    let (app, upstream) = spawn_deciding(|_| {}).await;
    for asked in every_outcome(&app).await {
        let forwarded_before = upstream.count();
        let gateway = through_gateway(&app, &asked).await;
        let reached = upstream.count() > forwarded_before;
        let caddy = forward_auth(&app, &asked, false).await;
        let nginx = forward_auth(&app, &asked, true).await;
        let envoy = ext_authz(&app, &asked).await;
        assert_eq!(upstream.count(), forwarded_before + usize::from(reached), "{}: a decision forwarded", asked.name);
        let expected = answer(&gateway);
        for (proxy, seen) in [("caddy", &caddy), ("nginx", &nginx), ("envoy", &envoy)] {
            assert_eq!(answer(seen), expected, "{}: {proxy}: {:?}", asked.name, seen.body);
            if seen.status != 200 {
                assert_eq!(seen.body, gateway.body, "{}: {proxy}: the same envelope", asked.name);
            }
        }
        // Each asking counts once, like a request: the remaining budget goes down by one.
        let remaining = |seen: &Seen| seen.header("x-ratelimit-remaining").map(|v| v.parse::<i64>().unwrap());
        if let Some(left) = remaining(&gateway) {
            let asked_after = [remaining(&caddy), remaining(&nginx), remaining(&envoy)];
            assert_eq!(asked_after, [Some(left - 1), Some(left - 2), Some(left - 3)], "{}", asked.name);
        }
        if asked.name.starts_with("allowed") {
            assert!(reached, "{}: the gateway forwarded it", asked.name);
            let received = upstream.last();
            for seen in [&caddy, &nginx, &envoy] {
                assert_eq!(seen.body, Value::Null, "{}: no body", asked.name);
                for name in ["x-keygate-tenant", "x-keygate-key", "x-keygate-scopes", "x-keygate-channel"] {
                    assert_eq!(seen.header(name), received.header(name), "{}: {name}", asked.name);
                }
            }
        } else {
            assert!(!reached, "{}: the gateway forwarded a refusal", asked.name);
        }
    }
}

/// Over the rate limit, every asking is the gateway's 429, with `Retry-After`.
#[tokio::test]
async fn a_rate_limited_key_is_429_with_retry_after_from_every_endpoint() {
    let (app, _upstream) = spawn_deciding(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &[], 1).await;
    let asked = Asked::new("limited", "GET", "/api/v1/open").key(&secret);
    assert_eq!(through_gateway(&app, &asked).await.status, 200);
    let gateway = through_gateway(&app, &asked).await;
    gateway.assert_error(429, "RATE_LIMITED");
    assert!(gateway.header("retry-after").is_some());
    for seen in
        [forward_auth(&app, &asked, false).await, forward_auth(&app, &asked, true).await, ext_authz(&app, &asked).await]
    {
        assert_eq!(answer(&seen), answer(&gateway), "{:?}", seen.body);
        assert_eq!(seen.header("x-ratelimit-remaining"), Some("0"));
        let seconds = |seen: &Seen| seen.header("retry-after").unwrap().parse::<i64>().unwrap();
        assert!((seconds(&gateway) - seconds(&seen)).abs() <= 1, "{:?}", seen.headers);
    }
}

/// A route without an upstream: the gateway answers 404 without judging, decisions judge it.
#[tokio::test]
async fn a_route_without_an_upstream_only_decides() {
    let (app, upstream) = spawn_deciding(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let asked = Asked::new("internal", "GET", "/internal/report").key(&secret);
    let gateway = through_gateway(&app, &asked).await;
    gateway.assert_error(404, "NOT_FOUND");
    assert!(gateway.header("x-ratelimit-limit").is_none(), "not judged, not counted");
    let decided = forward_auth(&app, &asked, false).await;
    assert_eq!(decided.status, 200);
    assert_eq!(decided.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(decided.header("x-ratelimit-remaining"), Some("999"), "the gateway's 404 counted nothing");
    assert_eq!(upstream.count(), 0);
}

/// Without the method or URI headers, `/forward-auth` is a 400 naming the headers it looked
/// for, and nothing is counted; with `server.decision_token`, a request without it is 401.
#[tokio::test]
async fn a_decision_without_what_it_needs_is_refused_and_counts_nothing() {
    let (app, _upstream) = spawn_deciding(|c| c.server.decision_token = Some(DECISION_TOKEN.to_owned())).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let token = ("x-keygate-decision-token", DECISION_TOKEN.to_owned());
    let key = ("authorization", format!("Bearer {secret}"));

    let no_token = decide(&app, "GET", "/forward-auth", std::slice::from_ref(&key)).await;
    no_token.assert_error(401, "ADMIN_TOKEN_INVALID");
    let wrong = decide(&app, "GET", "/v1/verify", &[("x-keygate-decision-token", "wrong".to_owned())]).await;
    wrong.assert_error(401, "ADMIN_TOKEN_INVALID");

    let missing = decide(&app, "GET", "/forward-auth", &[token.clone(), key.clone()]).await;
    missing.assert_error(400, "VALIDATION_ERROR");
    let named: Vec<&str> =
        missing.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(named, ["X-Forwarded-Method", "X-Forwarded-Uri"]);
    let message = missing.body["error"]["details"][0]["message"].as_str().unwrap();
    assert!(message.contains("X-Original-Method"), "{message}");
    let no_uri =
        decide(&app, "GET", "/forward-auth", &[token.clone(), key.clone(), ("x-original-method", "GET".into())]).await;
    no_uri.assert_error(400, "VALIDATION_ERROR");
    assert!(no_uri.body["error"]["message"].as_str().unwrap().contains("X-Original-URI"), "{}", no_uri.body);
    let absolute =
        [token.clone(), key.clone(), ("x-forwarded-method", "GET".into()), ("x-forwarded-uri", "http://evil/x".into())];
    decide(&app, "GET", "/forward-auth", &absolute).await.assert_error(400, "VALIDATION_ERROR");

    let asked = [
        token.clone(),
        key.clone(),
        ("x-forwarded-method", "GET".into()),
        ("x-forwarded-uri", "/api/v1/orders".into()),
    ];
    let allowed = decide(&app, "GET", "/forward-auth", &asked).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("x-ratelimit-remaining"), Some("999"), "the refused decisions counted nothing");
    decide(&app, "GET", "/elsewhere", std::slice::from_ref(&token)).await.assert_error(404, "NOT_FOUND");
    let seen = decide(&app, "GET", "/v1/verify", std::slice::from_ref(&token)).await;
    seen.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(seen.header("allow"), Some("POST"));
    // No proxy asks with TRACE: refused whatever the headers, counted nowhere.
    let traced = decide(&app, "TRACE", "/forward-auth", &asked).await;
    traced.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(traced.header("allow"), Some("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"));
    let after = decide(&app, "GET", "/forward-auth", &asked).await;
    assert_eq!(after.header("x-ratelimit-remaining"), Some("998"), "the TRACE counted nothing");
}

async fn verify(app: &TestApp, body: &Value) -> Seen {
    let url = format!("{}/v1/verify", app.decision.as_ref().unwrap());
    Seen::from(app.client.post(url).json(body).send().await.expect("verify")).await
}

/// `POST /v1/verify` gives every outcome as data: valid with who the caller is, or the code and
/// message the gateway would answer; it counts like a request.
#[tokio::test]
async fn verify_answers_every_outcome_as_data_and_counts_like_a_request() {
    let (app, upstream) = spawn_deciding(|_| {}).await;
    for asked in every_outcome(&app).await {
        if asked.method == "OPTIONS" || asked.headers.iter().filter(|(n, _)| *n == "authorization").count() != 1 {
            continue;
        }
        let header = |name: &str| asked.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let key = header("authorization").unwrap().trim_start_matches("Bearer ").to_owned();
        let mut body = json!({ "key": key, "method": asked.method, "path": asked.path });
        if let Some(origin) = header("origin") {
            body["origin"] = json!(origin);
        }
        if let Some(token) = header("x-session-token") {
            body["sessionToken"] = json!(token);
        }
        let gateway = through_gateway(&app, &asked).await;
        let seen = verify(&app, &body).await;
        if asked.name == "not in normal form" {
            seen.assert_error(400, "VALIDATION_ERROR");
            assert_eq!(seen.body["error"]["details"][0]["path"], "path");
            continue;
        }
        assert_eq!(seen.status, 200, "{}: {}", asked.name, seen.body);
        let data = &seen.body["data"];
        if gateway.status.is_success() {
            assert_eq!(data["valid"], true, "{}: {data}", asked.name);
            let received = upstream.last();
            assert_eq!(data["tenantId"].as_str(), received.header("x-keygate-tenant"));
            assert_eq!(data["keyId"].as_str(), received.header("x-keygate-key"));
            assert_eq!(data["channel"].as_str(), received.header("x-keygate-channel"));
            let scopes: Vec<&str> = data["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert_eq!(Some(scopes.join(" ").as_str()), received.header("x-keygate-scopes"));
            assert_eq!(data["meta"], Value::Null, "present, null: the key has none");
            let left: u64 = gateway.header("x-ratelimit-remaining").unwrap().parse().unwrap();
            assert_eq!(data["rateLimit"]["remaining"], json!(left - 1), "{}: counted once", asked.name);
            assert_eq!(
                data["rateLimit"]["limit"].as_u64().map(|l| l.to_string()).as_deref(),
                gateway.header("x-ratelimit-limit")
            );
        } else {
            let expected = json!({ "valid": false, "code": gateway.body["error"]["code"], "message": gateway.body["error"]["message"] });
            assert_eq!(*data, expected, "{}", asked.name);
        }
    }
    // Without a path: the key alone, with no route's demands.
    let (_, secret) = app.create_key("acme", json!({ "name": "m", "scopes": [], "meta": { "plan": "pro" } })).await;
    let seen = verify(&app, &json!({ "key": secret })).await;
    assert_eq!(seen.body["data"]["valid"], true, "{}", seen.body);
    assert_eq!(seen.body["data"]["meta"], json!({ "plan": "pro" }));
    assert_eq!(seen.body["data"]["channel"], "server");
    assert_eq!(
        seen.header("x-ratelimit-remaining"),
        seen.body["data"]["rateLimit"]["remaining"].as_u64().map(|n| n.to_string()).as_deref()
    );
}

/// Bad bodies are 400 with a detail each, and count nothing.
#[tokio::test]
async fn verify_refuses_a_bad_body_naming_each_field() {
    let (app, _upstream) = spawn_deciding(|_| {}).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &[], 10).await;
    let url = format!("{}/v1/verify", app.decision.as_ref().unwrap());
    let raw = Seen::from(app.client.post(&url).body("{not json").send().await.unwrap()).await;
    raw.assert_error(400, "VALIDATION_ERROR");
    for (body, paths) in [
        (json!({}), vec!["key"]),
        (json!({ "key": secret, "extra": 1 }), vec!["extra"]),
        (json!({ "key": 7, "origin": false, "path": [] }), vec!["key", "origin", "path"]),
        (json!({ "key": "k".repeat(513) }), vec!["key"]),
        (json!({ "key": secret, "method": "G E T", "path": "relative" }), vec!["method", "path"]),
        (json!({ "key": secret, "method": "M".repeat(33), "path": "/api/v1/caf\u{e9}" }), vec!["method", "path"]),
        (json!([secret]), vec![""]),
        (json!({ "key": secret, "origin": null, "sessionToken": null }), vec!["origin", "sessionToken"]),
    ] {
        let seen = verify(&app, &body).await;
        seen.assert_error(400, "VALIDATION_ERROR");
        let mut named: Vec<&str> =
            seen.body["error"]["details"].as_array().unwrap().iter().map(|d| d["path"].as_str().unwrap()).collect();
        named.sort_unstable();
        assert_eq!(named, paths, "{body}: {}", seen.body);
    }
    // The largest body the document allows is read (an answer, if not a valid key); one past
    // 64 KiB is not, and counts nothing.
    let largest = json!({ "key": "k".repeat(512), "origin": "\\".repeat(2048), "sessionToken": "\"".repeat(8192) });
    assert_eq!(verify(&app, &largest).await.status, 200);
    verify(&app, &json!({ "key": secret, "origin": "o".repeat(64 * 1024) }))
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let seen = verify(&app, &json!({ "key": secret })).await;
    assert_eq!(seen.body["data"]["rateLimit"]["remaining"], 9, "the refused bodies counted nothing");
    // Read alike whatever the JSON's spelling: escapes, a repeated field (the last one counts).
    for (body, remaining) in [
        (format!(r#"{{"key": "{secret}", "method": "\u0047ET"}}"#), 8),
        (format!(r#"{{"key": "kg_none", "key": "{secret}"}}"#), 7),
    ] {
        let seen = Seen::from(app.client.post(&url).body(body.clone()).send().await.unwrap()).await;
        assert_eq!(seen.body["data"]["valid"], true, "{body}: {}", seen.body);
        assert_eq!(seen.body["data"]["rateLimit"]["remaining"], remaining, "{body}");
    }
}

/// The decision listener serves its own part of the OpenAPI document.
#[tokio::test]
async fn the_decision_listener_serves_its_part_of_the_document() {
    let (app, _upstream) = spawn_deciding(|_| {}).await;
    let doc = decide(&app, "GET", "/openapi.json", &[]).await;
    assert_eq!(doc.status, 200);
    let paths: Vec<&String> = doc.body["paths"].as_object().unwrap().keys().collect();
    for path in ["/forward-auth", "/v1/verify", "/openapi.json", "/healthz"] {
        assert!(paths.iter().any(|p| *p == path), "{path} in {paths:?}");
    }
    assert!(paths.iter().all(|p| !p.starts_with("/admin") && *p != "/api/v1/sessions"), "{paths:?}");
    let public = app.get("/openapi.json").await;
    let public_paths: Vec<&String> = public.body["paths"].as_object().unwrap().keys().collect();
    assert!(public_paths.iter().all(|p| *p != "/forward-auth" && *p != "/v1/verify"), "{public_paths:?}");
}
