//! The gateway against a real keygate and a real recording upstream: what is forwarded, what
//! never is, and the headers the upstream sees.

use crate::common;

use common::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn an_allowed_request_is_forwarded_with_exactly_the_identity_headers() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (key, secret) = app.orders_key("acme", &["orders:read", "orders:write"]).await;
    let seen = app
        .request("GET", "/api/v1/orders/7?expand=lines&x=%20y")
        .key(&secret)
        .header("x-session-token", "not-checked-on-server-channel-reads")
        .header("x-keygate-tenant", "evil")
        .header("X-Keygate-Scopes", "*")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https")
        .header("x-http-method-override", "DELETE")
        .header("x-method-override", "DELETE")
        .header("x-http-method", "DELETE")
        .header("connection", "keep-alive, x-keygate-key, x-custom-hop")
        .header("x-custom-hop", "1")
        .header("x-request-id", "client-chosen")
        .header("x-app", "kept")
        .send()
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body, json!({ "ok": true, "bytes": 0 }));
    assert_eq!(seen.header("x-upstream"), Some("yes"));
    assert!(seen.header("x-ratelimit-remaining").is_some(), "rate-limit headers added to the upstream's answer");
    assert!(!seen.has_cors(), "the upstream's own CORS headers are dropped");
    assert!(seen.header("x-upstream-private").is_none(), "hop-by-hop headers named by the upstream are dropped");

    let received = upstream.last();
    assert_eq!((received.method.as_str(), received.target.as_str()), ("GET", "/api/v1/orders/7?expand=lines&x=%20y"));
    assert_eq!(received.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(received.header("x-keygate-key"), key["id"].as_str());
    assert_eq!(received.header("x-keygate-scopes"), Some("orders:read orders:write"));
    assert_eq!(received.header("x-keygate-channel"), Some("server"));
    assert_eq!(received.header("x-forwarded-for"), Some("127.0.0.1"), "computed by keygate, not the client's");
    assert_eq!(received.header("x-forwarded-proto"), Some("http"));
    assert_eq!(received.header("x-forwarded-host"), Some(app.public.trim_start_matches("http://")));
    let request_id = received.header("x-request-id").unwrap();
    assert_ne!(request_id, "client-chosen");
    assert_eq!(seen.header("x-request-id"), Some(request_id));
    assert_eq!(received.header("x-app"), Some("kept"));
    for removed in [
        "authorization",
        "x-session-token",
        "x-http-method-override",
        "x-method-override",
        "x-http-method",
        "x-custom-hop",
    ] {
        assert!(received.header(removed).is_none(), "{removed} reached the upstream");
    }
    assert_eq!(received.headers.get_all("x-keygate-tenant").iter().count(), 1);
    let keygate_headers: Vec<_> =
        received.headers.keys().map(|n| n.as_str()).filter(|n| n.starts_with("x-keygate-")).collect();
    assert_eq!(keygate_headers.len(), 4, "{keygate_headers:?}");
}

#[tokio::test]
async fn x_forwarded_headers_are_kept_only_from_a_trusted_proxy() {
    let (app, upstream) = spawn_gateway(|c| c.proxy.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let response = app
        .request("GET", "/api/v1/orders")
        .key(&secret)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "api.example.com")
        .header("x-forwarded-proto", "https")
        .response()
        .await;
    assert_eq!(response.status(), 200);
    let received = upstream.last();
    assert_eq!(received.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(received.header("x-forwarded-host"), Some("api.example.com"));
    assert_eq!(received.header("x-forwarded-proto"), Some("https"));
    assert_eq!(received.header("host"), Some(upstream.authority.as_str()), "the upstream's own host and port");
}

#[tokio::test]
async fn bodies_are_streamed_to_the_upstream_unchanged() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:write"]).await;
    let body = vec![b'x'; 300_000];
    let response = app.request("POST", "/api/v1/orders").key(&secret).body(body.clone()).response().await;
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.last().body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn no_failure_of_the_pipeline_reaches_the_upstream() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (reader, reader_secret) = app.orders_key("acme", &["orders:read"]).await;
    let (_, writer) = app.limited_key("acme", &["orders:write"], 1).await;
    let (_, expired) =
        app.create_key("acme", json!({ "name": "e", "scopes": ["*"], "expiresAt": rfc3339(now_seconds() - 5) })).await;
    let (revoked, revoked_secret) = app.create_key("acme", json!({ "name": "r", "scopes": ["*"] })).await;
    app.admin_request(Method::POST, &format!("/admin/v1/keys/{}/revoke", revoked["id"].as_str().unwrap()), None).await;
    app.create_tenant(json!({ "id": "nomods", "name": "No modules" })).await;
    let (_, no_module) = app.create_key("nomods", json!({ "name": "n", "scopes": ["*"] })).await;
    let unknown = keygate::secret::generate_secret("kg").secret;
    let allowed_at_orders = "GET, HEAD, POST, PUT, PATCH, DELETE, PURGE";
    assert!(reader["id"].is_string());

    // (method, path, key, origin, session token, status, code)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/api/v1/orders", "", None, None, 401, "API_KEY_REQUIRED"),
        ("GET", "/api/v1/orders", "nope", None, None, 401, "API_KEY_INVALID"),
        ("GET", "/api/v1/orders", &unknown, None, None, 401, "API_KEY_INVALID"),
        ("GET", "/api/v1/orders", &revoked_secret, None, None, 401, "API_KEY_REVOKED"),
        ("GET", "/api/v1/orders", &expired, None, None, 401, "API_KEY_EXPIRED"),
        ("GET", "/api/v1/orders", &reader_secret, Some("https://evil.example"), None, 403, "ORIGIN_NOT_ALLOWED"),
        ("POST", "/api/v1/orders", &reader_secret, Some(ORIGIN), None, 401, "SESSION_REQUIRED"),
        ("GET", "/api/v1/orders", &reader_secret, Some(ORIGIN), Some("x.y.z"), 401, "SESSION_INVALID"),
        ("GET", "/api/v1/orders", &no_module, None, None, 403, "MODULE_NOT_ENABLED"),
        ("POST", "/api/v1/orders", &reader_secret, None, None, 403, "SCOPE_NOT_GRANTED"),
        ("GET", "/api/v1/nowhere", &reader_secret, None, None, 404, "NOT_FOUND"),
        ("GET", "/api/v1/ordersx", &reader_secret, None, None, 404, "NOT_FOUND"),
        ("COPY", "/api/v1/orders", &reader_secret, None, None, 405, "METHOD_NOT_ALLOWED"),
        ("post", "/api/v1/orders", &reader_secret, None, None, 405, "METHOD_NOT_ALLOWED"),
    ];
    for (method, path, secret, origin, session, status, code) in cases {
        let seen = app.request(method, path).key(secret).origin(origin).session(session).send().await;
        seen.assert_error(status, code);
        if status == 405 {
            // Every method some route at the path answers, in the order the config names them.
            assert_eq!(seen.header("allow"), Some(allowed_at_orders), "{method} {path}");
        }
    }
    // The writer's one request a day goes through; the next is limited.
    assert_eq!(app.request("PATCH", "/api/v1/orders/1").key(&writer).send().await.status, 200);
    app.request("PATCH", "/api/v1/orders/1").key(&writer).send().await.assert_error(429, "RATE_LIMITED");
    for (standing, code) in [
        (json!({ "status": "suspended" }), "TENANT_SUSPENDED"),
        (json!({ "status": "active", "subscription": "cancelled" }), "SUBSCRIPTION_CANCELLED"),
        (json!({ "subscription": "past_due" }), "SUBSCRIPTION_PAST_DUE"),
    ] {
        app.patch_tenant("acme", standing).await;
        app.request("GET", "/api/v1/orders").key(&reader_secret).send().await.assert_error(403, code);
    }
    assert_eq!(upstream.count(), 1, "only the one allowed request reached the upstream");
}

#[tokio::test]
async fn routes_declare_writes_and_head_follows_get() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    // POST /search is declared a read: no session needed from the browser.
    let seen = app.request("POST", "/api/v1/search").key(&secret).origin(ORIGIN).send().await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(app.request("HEAD", "/api/v1/orders/1").key(&secret).send().await.status, 200);
    assert_eq!(upstream.last().method, "HEAD");
    // A write from the browser channel on an open route needs a session too.
    app.request("POST", "/api/v1/open").key(&secret).origin(ORIGIN).send().await.assert_error(401, "SESSION_REQUIRED");
}

#[tokio::test]
async fn bad_paths_are_400_and_nothing_is_forwarded() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["*"]).await;
    for path in [
        "/api/v1/../admin/v1/tenants",
        "/api/v1/orders/../../admin/v1/tenants",
        "/api/v1/%2e%2e/admin/v1/tenants",
        "/api/v1/%2E%2E/admin/v1/tenants",
        "/api/v1/orders/%2e%2e/%2e%2e/admin",
        "/api/v1/orders/.%2e/x",
        "/api/v1/orders/./7",
        "/api/v1/orders%2f7",
        "/api/v1/orders%2F..%2Fadmin",
        "/api/v1/orders%5c7",
        "/api/v1/orders\\7",
        "/api/v1//orders",
    ] {
        let seen = raw::get(&app.public, path, &secret, "").await;
        assert!(seen.starts_with("HTTP/1.1 400"), "{path}: {seen}");
        assert!(seen.contains("VALIDATION_ERROR"), "{path}");
    }
    assert_eq!(upstream.count(), 0);
    for path in ["/admin/v1/tenants", "/metrics"] {
        app.request("GET", path).key(&secret).send().await.assert_error(404, "NOT_FOUND");
    }
    let trailing = app.request("GET", "/api/v1/orders/").key(&secret).send().await;
    assert_eq!(trailing.status, 200);
    assert_eq!(upstream.last().target, "/api/v1/orders/");
}

#[tokio::test]
async fn an_oversized_body_is_413_before_the_upstream_is_contacted() {
    let (app, upstream) = spawn_gateway(|c| c.proxy.max_body_bytes = 1024).await;
    let (_, secret) = app.orders_key("acme", &["orders:write"]).await;
    let seen = app.request("POST", "/api/v1/orders").key(&secret).body(vec![b'x'; 2048]).send().await;
    seen.assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(seen.header("x-ratelimit-limit").is_some(), "413 comes after the pipeline");

    // A streamed body without Content-Length is cut off when it passes the cap.
    let chunks = futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 512])));
    app.request("POST", "/api/v1/orders")
        .key(&secret)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    assert!(upstream.received().iter().all(|r| r.body.len() <= 1024), "no more than the cap was forwarded");
    assert_eq!(upstream.received().iter().filter(|r| r.body.len() == 2048).count(), 0);
}

#[tokio::test]
async fn a_down_upstream_is_502_and_a_slow_one_504() {
    let (app, _) = spawn_gateway(|c| c.proxy.response_timeout_ms = 500).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    app.request("GET", "/api/v1/slow").key(&secret).send().await.assert_error(504, "UPSTREAM_TIMEOUT");

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = spawn_with(move |c| c.routes = gateway_routes(&dead)).await;
    let (_, secret) = down.orders_key("acme", &["orders:read"]).await;
    let seen = down.request("GET", "/api/v1/orders").key(&secret).send().await;
    seen.assert_error(502, "UPSTREAM_UNAVAILABLE");
    assert!(seen.header("x-ratelimit-limit").is_some());
}

#[tokio::test]
async fn preflight_lists_the_methods_of_the_routes_at_the_path() {
    let (app, _) = spawn_gateway(|_| {}).await;
    app.orders_key("acme", &["orders:read"]).await;
    let seen = app.preflight("/api/v1/orders/7", ORIGIN, "PATCH").await;
    assert_eq!(seen.status, 204);
    assert_eq!(seen.header("access-control-allow-methods"), Some("GET, POST, PUT, PATCH, DELETE, PURGE"));
    assert_eq!(seen.header("access-control-allow-origin"), Some(ORIGIN));
}

#[tokio::test]
async fn routes_lie_on_any_path_and_keygates_own_paths_still_win() {
    let (app, upstream) = spawn_routed(
        |url| {
            let route = |prefix: &str, methods: &[&str]| keygate::config::RouteConfig {
                prefix: prefix.to_owned(),
                methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
                upstream: Some(url.parse().unwrap()),
                module: None,
                scope: None,
                write: None,
                forward_meta: false,
            };
            vec![route("/v2", &["GET"]), route("/api/v1", &["GET", "POST"]), route("/", &["GET"])]
        },
        |_| {},
    )
    .await;
    let (_, secret) = app.orders_key("acme", &["sessions:create"]).await;
    for (path, reached) in
        [("/v2/things?x=1", "/v2/things?x=1"), ("/api/v1/orders/7", "/api/v1/orders/7"), ("/graphql", "/graphql")]
    {
        let seen = app.request("GET", path).key(&secret).send().await;
        assert_eq!(seen.status, 200, "{path}");
        assert_eq!(upstream.last().target, reached);
        assert_eq!(upstream.last().header("x-keygate-tenant"), Some("acme"));
    }
    // Unauthenticated on a routed path: the pipeline refuses, nothing reaches the upstream.
    let before = upstream.count();
    app.get("/graphql").await.assert_error(401, "API_KEY_REQUIRED");
    // keygate's own paths answer, whatever the catch-all.
    assert_eq!(app.get("/healthz").await.body, serde_json::json!({ "data": { "status": "ok" } }));
    assert!(app.get("/.well-known/jwks.json").await.body["keys"].is_array());
    assert_eq!(app.mint(&secret, Some(ORIGIN)).await.status, 201);
    assert_eq!(upstream.count(), before, "none of those reached the upstream");
    // A preflight on a routed path outside /api/v1 is answered from the allowlists.
    let preflight = app.preflight("/v2/things", ORIGIN, "GET").await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(ORIGIN));
    // 405 on a routed path names the methods there.
    let seen = app.request("DELETE", "/v2/things").key(&secret).send().await;
    seen.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(seen.header("allow"), Some("GET, HEAD"));
}

/// An upstream that answers in HTTP/1.0, one request a connection, as old servers do.
async fn http_1_0_upstream() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

/// The client's connection keeps its own HTTP version whatever the upstream speaks: behind an
/// HTTP/1.0 upstream an HTTP/1.1 client still gets HTTP/1.1 answers on one kept-alive
/// connection.
#[tokio::test]
async fn an_http_1_0_upstream_does_not_downgrade_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = http_1_0_upstream().await;
    let app = spawn_with(|config| config.routes = gateway_routes(&upstream)).await;
    app.create_tenant(json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &[], 100).await;
    let mut stream = tokio::net::TcpStream::connect(raw::address(&app.public)).await.unwrap();
    let request = |close: &str| {
        format!("GET /api/v1/open HTTP/1.1\r\nHost: keygate\r\nAuthorization: Bearer {secret}\r\n{close}\r\n")
    };
    stream.write_all(request("").as_bytes()).await.unwrap();
    let mut first = Vec::new();
    let mut buffer = [0u8; 4096];
    while !first.ends_with(b"\r\n\r\nok") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer)).await;
        let n = read.expect("the first answer within 10 s").unwrap();
        assert!(n > 0, "the connection stayed open after the first answer: {}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buffer[..n]);
    }
    let first = String::from_utf8_lossy(&first).to_lowercase();
    assert!(first.starts_with("http/1.1 200 ok\r\n"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    stream.write_all(request("Connection: close\r\n").as_bytes()).await.unwrap();
    let mut second = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut second)).await.unwrap().unwrap();
    let second = String::from_utf8_lossy(&second);
    assert!(second.starts_with("HTTP/1.1 200 OK\r\n") && second.ends_with("ok"), "{second}");
}
