//! The bypasses of the security review (docs/security.md), each against a real keygate and a
//! real recording upstream: path spellings, spoofed header names, idle connections, HTTP/2
//! clients and the forwarded host.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use keygate::config::RouteConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `/api/v1/orders/internal` needs `orders:admin`; the broader `/api/v1/orders` only
/// `orders:read`.
fn nested_routes(upstream: &str) -> Vec<RouteConfig> {
    let route = |prefix: &str, scope: &str| RouteConfig {
        prefix: prefix.to_owned(),
        methods: vec!["GET".parse().unwrap(), "POST".parse().unwrap()],
        upstream: Some(upstream.parse().unwrap()),
        module: None,
        scope: Some(keygate::scope::Scope::parse(scope).unwrap()),
        write: None,
        forward_meta: false,
    };
    vec![route("/api/v1/orders/internal", "orders:admin"), route("/api/v1/orders", "orders:read")]
}

#[tokio::test]
async fn no_spelling_of_a_stricter_path_gets_the_broader_routes_checks() {
    let (app, upstream) = spawn_routed(nested_routes, |_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let refused = [
        "/api/v1/orders/internal/report",
        "/api/v1/orders/%69nternal/report",
        "/api/v1/orders/%69%6E%74%65%72%6e%61%6c/report",
        "/api/v1/orders/intern%61l",
        "/api/v1/%6Frders/internal",
        "/api/v1/orders/internal;x/report",
        "/api/v1/orders/internal;/report",
        "/api/v1/orders;/internal/report",
        "/api/v1/orders/internal%3bx/report",
        "/api/v1/orders/%2569nternal/report",
        "/api/v1/orders/INTERNAL/report",
        "/api/v1/orders/Internal/report",
        "/api/v1/orders/iNtErNaL",
        "/api/v1/ORDERS/internal/report",
        "/api/v1/orders/%49nternal/report",
        // Found by the `path` fuzz target: a `%` that is no escape, and what follows it decoded,
        // made `%69`, so the normal form was not a fixed point. The layer's second check
        // (`paths::is_normal`) refused these already; now normalisation itself does.
        "/api/v1/orders/%%369nternal/report",
        "/api/v1/orders/%%3669nternal/report",
        "/api/v1/orders/%4%39nternal/report",
        // SPEC §17: suffix spellings. Rails' `(.:format)`, older Spring suffix matching and IIS
        // read each of these as /api/v1/orders/internal.
        "/api/v1/orders/internal.json",
        "/api/v1/orders/internal%2Ejson",
        "/api/v1/orders/internal.",
        "/api/v1/orders/internal...",
        "/api/v1/orders/internal%20",
        "/api/v1/orders/internal%20.",
        "/api/v1/orders/internal%09",
        "/api/v1/orders/Internal.JSON/report",
        "/api/v1/orders/internal.tar.gz",
        "/api/v1/orders/internal.json%20",
    ];
    for target in refused {
        let answer = raw::get(&app.public, target, &secret, "").await;
        let status = raw::status(&answer);
        let by_its_own_scope = status == 403 && answer.contains("SCOPE_NOT_GRANTED");
        let as_a_bad_path = status == 400 && answer.contains("VALIDATION_ERROR");
        assert!(by_its_own_scope || as_a_bad_path, "{target}: {answer}");
    }
    assert_eq!(upstream.count(), 0, "no spelling reached the upstream");

    // A suffix is an ordinary path where no more specific route could be meant.
    for target in ["/api/v1/orders/7.json", "/api/v1/orders/internals.json", "/api/v1/orders/report.internal"] {
        assert_eq!(raw::status(&raw::get(&app.public, target, &secret, "").await), 200, "{target}");
    }
    assert_eq!(upstream.count(), 3);

    // The stricter route's own key gets through every spelling that decodes to it.
    let (_, admin_secret) = app.orders_key("globex", &["orders:read", "orders:admin"]).await;
    let answer = raw::get(&app.public, "/api/v1/orders/%69nternal/report", &admin_secret, "").await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.last().target, "/api/v1/orders/internal/report");
}

#[tokio::test]
async fn encoded_unreserved_characters_are_forwarded_decoded_with_the_query_unchanged() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let answer = raw::get(&app.public, "/api/v1/orders/%37%41-%7e%2E%5f?q=%41%2e&x=%20y", &secret, "").await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.last().target, "/api/v1/orders/7A-~._?q=%41%2e&x=%20y");
    // Other escapes are not unreserved characters: they are forwarded as they came.
    let answer = raw::get(&app.public, "/api/v1/orders/a%20b%C3%A9", &secret, "").await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.last().target, "/api/v1/orders/a%20b%C3%A9");
}

#[tokio::test]
async fn underscore_and_rewrite_headers_never_reach_the_upstream() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (key, secret) = app.orders_key("acme", &["orders:read"]).await;
    let spoofed = "X_Keygate_Tenant: globex\r\nX-Keygate_Scopes: orders:admin\r\nx_keygate_key: key_other\r\n\
                   X_Forwarded_For: 10.9.9.9\r\nX-Forwarded_Host: evil.example\r\nX-Real-IP: 10.9.9.9\r\n\
                   X-Original-URL: /api/v1/orders/internal\r\nX-Rewrite-URL: /api/v1/orders/internal\r\n\
                   X_Custom: 1\r\nX-Keygate-Tenant: globex\r\nX-Request-Id: client-chosen\r\n";
    let answer = raw::get(&app.public, "/api/v1/orders", &secret, spoofed).await;
    assert_eq!(raw::status(&answer), 200, "{answer}");

    let received = upstream.last();
    for name in received.headers.keys() {
        let name = name.as_str();
        assert!(!name.contains('_'), "{name} reached the upstream");
        assert!(!["x-real-ip", "x-original-url", "x-rewrite-url"].contains(&name), "{name} reached the upstream");
    }
    assert_eq!(received.headers.get_all("x-keygate-tenant").iter().collect::<Vec<_>>(), ["acme"]);
    assert_eq!(received.headers.get_all("x-keygate-key").iter().collect::<Vec<_>>(), [key["id"].as_str().unwrap()]);
    assert_eq!(received.headers.get_all("x-keygate-scopes").iter().collect::<Vec<_>>(), ["orders:read"]);
    assert_eq!(received.headers.get_all("x-keygate-channel").iter().collect::<Vec<_>>(), ["server"]);
    assert_eq!(received.headers.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["127.0.0.1"]);
    assert_eq!(received.header("x-forwarded-host"), Some(raw::address(&app.public)));
    assert_ne!(received.header("x-request-id"), Some("client-chosen"));
}

#[tokio::test]
async fn a_connection_header_cannot_remove_keygates_request_id() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let answer =
        raw::get(&app.public, "/api/v1/orders", &secret, "Connection: X-Request-Id, X-Keygate-Tenant\r\n").await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    let received = upstream.last();
    let request_id = received.header("x-request-id").expect("keygate's X-Request-Id reached the upstream");
    assert!(answer.to_ascii_lowercase().contains(&format!("x-request-id: {}", request_id.to_ascii_lowercase())));
    assert_eq!(received.header("x-keygate-tenant"), Some("acme"));
}

#[tokio::test]
async fn the_public_host_is_the_forwarded_host_whatever_the_client_sends() {
    let (app, upstream) = spawn_gateway(|c| c.server.public_host = Some("api.example.com".to_owned())).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let request = format!(
        "GET /api/v1/orders HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Host: evil.example\r\n\
         Authorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw::exchange(&app.public, &request).await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.last().header("x-forwarded-host"), Some("api.example.com"));
}

#[tokio::test]
async fn an_http2_client_is_forwarded_like_any_other() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .args(["-H", &format!("Authorization: Bearer {secret}")])
        .arg(format!("{}/api/v1/orders/7?x=1", app.public));
    // curl blocks: run it off this test's runtime, which also runs keygate.
    let output = tokio::task::spawn_blocking(move || curl.output()).await.unwrap().expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200 2", "{}", String::from_utf8_lossy(&output.stderr));
    let received = upstream.last();
    assert_eq!(received.target, "/api/v1/orders/7?x=1");
    assert_eq!(received.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(received.header("x-forwarded-host"), Some(raw::address(&app.public)), "from :authority");
}

const DEADLINE: Duration = Duration::from_millis(600);
/// Scheduling slack on a shared 2-core machine.
const SLACK: Duration = Duration::from_millis(900);

#[tokio::test]
async fn connections_without_a_complete_head_are_closed_by_the_deadline() {
    let app = spawn_with(|c| c.server.header_read_timeout_ms = DEADLINE.as_millis() as u64).await;
    let openings: [&[u8]; 5] = [
        b"",
        b"G",
        b"PRI * HTTP/2.0\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: ",
        // A whole HTTP/2 preface and SETTINGS frame, but never a request.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
    ];
    let started = Instant::now();
    let mut sockets = Vec::new();
    for opening in openings {
        let mut stream = TcpStream::connect(raw::address(&app.public)).await.unwrap();
        stream.write_all(opening).await.unwrap();
        sockets.push((opening, stream));
    }
    let closes = sockets.iter_mut().map(|(_, stream)| raw::time_until_closed(stream, started, DEADLINE + SLACK));
    let closes = futures_util::future::join_all(closes).await;
    for (closed, opening) in closes.into_iter().zip(openings) {
        let opening = String::from_utf8_lossy(opening);
        let closed = closed.unwrap_or_else(|| panic!("{opening:?}: still open after {:?}", DEADLINE + SLACK));
        assert!(closed >= DEADLINE - Duration::from_millis(100), "{opening:?}: closed early, after {closed:?}");
    }
}

#[tokio::test]
async fn idle_connections_are_closed_after_their_last_request() {
    let app = spawn_with(|c| c.server.header_read_timeout_ms = DEADLINE.as_millis() as u64).await;

    // HTTP/2: a request, then silence.
    let stream = TcpStream::connect(raw::address(&app.public)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("{}/healthz", app.public)).body(String::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let answered = Instant::now();
    let closed = tokio::time::timeout(DEADLINE + SLACK + Duration::from_secs(1), connection).await;
    assert!(closed.is_ok(), "the idle HTTP/2 connection is still open after {:?}", answered.elapsed());
    assert!(answered.elapsed() >= DEADLINE - Duration::from_millis(100), "closed early: {:?}", answered.elapsed());

    // HTTP/1.1 keep-alive: a request, then silence.
    let mut stream = TcpStream::connect(raw::address(&app.public)).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answered = Instant::now();
    let closed = raw::time_until_closed(&mut stream, answered, DEADLINE + SLACK).await;
    assert!(closed.is_some(), "the idle HTTP/1.1 connection is still open");
}

#[tokio::test]
async fn over_the_connection_cap_new_connections_are_closed_and_health_answers_once_idle_ones_go() {
    const CAP: u32 = 8;
    let app = spawn_with(|c| {
        c.server.header_read_timeout_ms = DEADLINE.as_millis() as u64;
        c.server.max_connections = CAP;
    })
    .await;
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..2 * CAP {
        idle.push(TcpStream::connect(raw::address(&app.public)).await.unwrap());
    }
    let closes = idle.iter_mut().map(|stream| raw::time_until_closed(stream, started, DEADLINE + SLACK));
    let closed_at: Vec<Duration> = futures_util::future::join_all(closes)
        .await
        .into_iter()
        .map(|closed| closed.expect("every idle socket is closed by the deadline or the cap"))
        .collect();
    let at_once = closed_at.iter().filter(|at| **at < DEADLINE / 2).count();
    assert_eq!(at_once, CAP as usize, "the sockets over the cap are closed at once: {closed_at:?}");

    let last_closed = started + *closed_at.iter().max().unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    let health = client.get(format!("{}/healthz", app.public)).send().await.expect("/healthz answers");
    assert_eq!(health.status(), 200);
    assert!(last_closed.elapsed() < Duration::from_secs(1));

    let refused = app.metric("keygate_connections_refused_total{listener=\"public\"}").await;
    assert!(refused >= CAP as f64, "{refused} connections refused");
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_is_431_and_never_forwarded() {
    let (app, upstream) = spawn_gateway(|c| c.server.max_header_bytes = 4096).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let big = "x".repeat(5000);

    // Over the limit: the envelope, and the connection stays usable for the next request.
    let mut stream = TcpStream::connect(raw::address(&app.public)).await.unwrap();
    let host = raw::address(&app.public);
    let head = |extra: &str| {
        format!("GET /api/v1/orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {secret}\r\n{extra}\r\n")
    };
    stream.write_all(head(&format!("X-Big: {big}\r\n")).as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert_eq!(raw::status(&answer), 431, "{answer}");
    assert!(answer.contains("\"code\":\"HEADERS_TOO_LARGE\""), "{answer}");
    stream.write_all(head("").as_bytes()).await.unwrap();
    let answer = read_response(&mut stream).await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.count(), 1, "only the request within the limit was forwarded");

    // Far over it (past twice the limit), hyper stops reading: 431, and the connection closes.
    let answer = raw::get(&app.public, "/api/v1/orders", &secret, &format!("X-Big: {}\r\n", "x".repeat(20_000))).await;
    assert_eq!(raw::status(&answer), 431, "{answer}");
    assert_eq!(upstream.count(), 1);

    // HTTP/2 counts the same head the same way.
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--http2-prior-knowledge", "-w", " %{http_code} %{http_version}"])
        .args(["-H", &format!("Authorization: Bearer {secret}"), "-H", &format!("X-Big: {big}")])
        .arg(format!("{}/api/v1/orders", app.public));
    let output = tokio::task::spawn_blocking(move || curl.output()).await.unwrap().expect("curl runs");
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(answer.ends_with(" 431 2") && answer.contains("HEADERS_TOO_LARGE"), "{answer}");
    assert_eq!(upstream.count(), 1);

    // Just under the limit is served.
    let answer = raw::get(&app.public, "/api/v1/orders", &secret, &format!("X-Big: {}\r\n", "x".repeat(3500))).await;
    assert_eq!(raw::status(&answer), 200, "{answer}");
    assert_eq!(upstream.count(), 2);
}

#[tokio::test]
async fn more_than_100_header_fields_are_431_over_http2_as_over_http1() {
    let (app, upstream) = spawn_gateway(|_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    // curl adds User-Agent and Accept (and Host over HTTP/1.1; HTTP/2 has :authority): with
    // Authorization, `extra` fields make `extra + 3` over HTTP/2 and `extra + 4` over HTTP/1.1.
    let curl = |http2: bool, extra: usize| {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-w", " %{http_code} %{http_version}"]);
        if http2 {
            curl.arg("--http2-prior-knowledge");
        }
        curl.args(["-H", &format!("Authorization: Bearer {secret}")]);
        for n in 0..extra {
            curl.args(["-H", &format!("X-Field-{n}: {n}")]);
        }
        curl.arg(format!("{}/api/v1/orders", app.public));
        async move {
            let output = tokio::task::spawn_blocking(move || curl.output()).await.unwrap().expect("curl runs");
            String::from_utf8_lossy(&output.stdout).into_owned()
        }
    };
    // Over HTTP/2, keygate's own 431 in the envelope: before, such a request was forwarded (and
    // the upstream, itself limited, answered a bare 431). Over HTTP/1, hyper's 431, as before.
    let answer = curl(true, 98).await;
    assert!(answer.ends_with(" 431 2") && answer.contains("HEADERS_TOO_LARGE"), "{answer}");
    assert!(curl(false, 97).await.ends_with(" 431 1.1"));
    assert_eq!(upstream.count(), 0, "neither was forwarded");
    // Well within the limit (the upstream's own is 100 too, and keygate adds its headers).
    assert!(curl(true, 80).await.ends_with(" 200 2"));
    assert!(curl(false, 80).await.ends_with(" 200 1.1"));
    assert_eq!(upstream.count(), 2);
}

/// Reads one response with a `Content-Length` body from a kept-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(read > 0, "the connection closed early");
        answer.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn repeated_failed_authentications_from_one_client_are_limited_and_others_are_not() {
    let (app, upstream) = spawn_gateway(|c| {
        c.rate_limit.failed_auth_limit = 3;
        // The test client reaches keygate as 127.0.0.1: a trusted proxy naming the client.
        c.proxy.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let from = |client: &'static str, key: String| {
        let request = app.client.get(format!("{}/api/v1/orders", app.public)).bearer_auth(key);
        async move { Seen::from(request.header("x-forwarded-for", client).send().await.unwrap()).await }
    };
    let guess = || keygate::secret::generate_secret("kg").secret;
    for _ in 0..3 {
        from("203.0.113.7", guess()).await.assert_error(401, "API_KEY_INVALID");
    }
    let limited = from("203.0.113.7", guess()).await;
    limited.assert_error(429, "RATE_LIMITED");
    assert!(limited.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| (1..=60).contains(&s)));
    // The address is limited whatever key it presents; another client is not.
    from("203.0.113.7", secret.clone()).await.assert_error(429, "RATE_LIMITED");
    assert_eq!(from("203.0.113.8", secret.clone()).await.status, 200);
    assert_eq!(upstream.count(), 1);

    // IPv6: a client rotating through its /64 is one client; the next /64 is another.
    for host in ["2001:db8:0:7::1", "2001:db8:0:7::2", "2001:db8:0:7:abcd::3"] {
        from(host, guess()).await.assert_error(401, "API_KEY_INVALID");
    }
    from("2001:db8:0:7:ffff::4", secret.clone()).await.assert_error(429, "RATE_LIMITED");
    assert_eq!(from("2001:db8:0:8::1", secret.clone()).await.status, 200);

    // A hop that does not parse ends the walk: the guesser cannot pass as a fresh client by
    // writing one, nor hide behind ip:port.
    for chain in ["198.51.100.1, 203.0.113.9:4711", "198.51.100.2, 203.0.113.9", "198.51.100.3, [::ffff:203.0.113.9]:1"]
    {
        from(chain, guess()).await.assert_error(401, "API_KEY_INVALID");
    }
    from("198.51.100.4, junk, 203.0.113.9", secret.clone()).await.assert_error(429, "RATE_LIMITED");
    assert_eq!(upstream.count(), 2);
}

#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    // Always SQLite, whichever store the suite runs on: these files hold the signing keys.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.db");
    let url = format!("sqlite://{}", path.display());
    let app = spawn_with(move |c| c.store.url = url.parse().unwrap()).await;
    app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
    for file in ["private.db", "private.db-wal", "private.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file)).expect(file).permissions().mode() & 0o777;
        // Before, 0644 under the usual umask: any local user could read the signing keys.
        assert_eq!(mode, 0o600, "{file}: {mode:o}");
    }
    app.stop().await;
}
