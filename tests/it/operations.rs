//! Operations: Prometheus metrics on the admin listener, and a graceful SIGTERM that lets
//! in-flight requests finish.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{self, Served, create_tenant, tenant_with_key};
use common::*;

#[tokio::test]
async fn metrics_count_requests_outcomes_sessions_and_upstream_errors() {
    let (app, _) = spawn_gateway(|c| c.proxy.response_timeout_ms = 300).await;
    let (_, secret) = app.orders_key("acme", &["sessions:create", "orders:read"]).await;
    app.session(&secret, ORIGIN).await;
    app.request("GET", "/api/v1/orders").key(&secret).send().await;
    app.request("POST", "/api/v1/orders").key(&secret).send().await.assert_error(403, "SCOPE_NOT_GRANTED");
    app.request("GET", "/api/v1/slow").key(&secret).send().await.assert_error(504, "UPSTREAM_TIMEOUT");
    // Passed through from the upstream: counted by status class, not as "OK".
    assert_eq!(app.request("GET", "/api/v1/open?status=501").key(&secret).send().await.status, 501);
    assert_eq!(app.request("GET", "/api/v1/open?status=404").key(&secret).send().await.status, 404);
    // Refused before any route: counted as route "unmatched".
    app.get("/api/v1/nowhere").await.assert_error(404, "NOT_FOUND");
    app.request("PUT", "/api/v1/slow").key(&secret).send().await.assert_error(405, "METHOD_NOT_ALLOWED");
    let bad_path = raw::get(&app.public, "/api/v1/orders\\x", &secret, "").await;
    assert_eq!(raw::status(&bad_path), 400, "{bad_path}");

    let response = app.client.get(format!("{}/metrics", app.admin)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for (series, at_least) in [
        ("keygate_requests_total{route=\"sessions\",code=\"OK\"}", 1.0),
        ("keygate_requests_total{route=\"/api/v1/orders\",code=\"OK\"}", 1.0),
        ("keygate_requests_total{route=\"/api/v1/orders\",code=\"SCOPE_NOT_GRANTED\"}", 1.0),
        ("keygate_requests_total{route=\"/api/v1/slow\",code=\"UPSTREAM_TIMEOUT\"}", 1.0),
        ("keygate_sessions_minted_total", 1.0),
        ("keygate_upstream_errors_total{kind=\"timeout\"}", 1.0),
        ("keygate_key_cache_hits_total", 1.0),
        ("keygate_key_cache_misses_total", 1.0),
        ("keygate_request_duration_seconds_count{route=\"sessions\"}", 1.0),
        ("keygate_requests_total{route=\"/api/v1/open\",code=\"UPSTREAM_5XX\"}", 1.0),
        ("keygate_requests_total{route=\"/api/v1/open\",code=\"UPSTREAM_4XX\"}", 1.0),
        ("keygate_requests_total{route=\"unmatched\",code=\"NOT_FOUND\"}", 1.0),
        ("keygate_requests_total{route=\"unmatched\",code=\"METHOD_NOT_ALLOWED\"}", 1.0),
        ("keygate_requests_total{route=\"unmatched\",code=\"VALIDATION_ERROR\"}", 1.0),
    ] {
        assert!(metric_value(&text, series) >= at_least, "{series} in\n{text}");
    }
    assert!(text.contains("keygate_request_duration_seconds_bucket{route=\"sessions\",le=\"0.005\"}"));
    // Every series says what it counts.
    let types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    // The families this test's requests counted in (a series appears at its first count).
    assert!(types.len() >= 7, "{text}");
    for name in types {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name} in\n{text}");
    }
}

/// A fresh keygate shows only series that have counted: no zero for every route and code, and
/// no pair that cannot happen; a request's series appears with its first count.
#[tokio::test]
async fn metrics_show_only_what_has_counted() {
    let store = TestStore::new().await;
    let route = "[[routes]]\nprefix = \"/api/v1/orders\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:9\"\n";
    let served = process::serve(&process::write_config(&store, "metrics", route), &[]);
    let client = reqwest::Client::new();
    let metrics = || async {
        let response = client.get(format!("http://{}/metrics", served.admin)).bearer_auth(ADMIN_TOKEN).send();
        response.await.unwrap().text().await.unwrap()
    };
    let fresh = metrics().await;
    let series: Vec<&str> = fresh.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    assert!(!fresh.contains("keygate_requests_total"), "nothing judged yet:\n{fresh}");
    assert!(series.len() <= 12, "{} series at start:\n{fresh}", series.len());
    let missing = client.get(format!("http://{}/api/v1/orders", served.public)).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let after = metrics().await;
    let requests: Vec<&str> = after.lines().filter(|l| l.starts_with("keygate_requests_total")).collect();
    assert_eq!(requests, ["keygate_requests_total{route=\"/api/v1/orders\",code=\"API_KEY_REQUIRED\"} 1"], "{after}");
}

#[tokio::test]
async fn rate_limited_requests_are_counted() {
    let app = spawn_app().await;
    app.create_tenant(serde_json::json!({ "id": "acme", "name": "Acme" })).await;
    let (_, secret) = app.limited_key("acme", &["sessions:create"], 1).await;
    app.mint(&secret, Some(ORIGIN)).await;
    app.mint(&secret, Some(ORIGIN)).await.assert_error(429, "RATE_LIMITED");
    let response = app.client.get(format!("{}/metrics", app.admin)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    let text = response.text().await.unwrap();
    assert!(metric_value(&text, "keygate_rate_limited_total") >= 1.0, "{text}");
    assert!(metric_value(&text, "keygate_requests_total{route=\"sessions\",code=\"RATE_LIMITED\"}") >= 1.0);
}

/// Starts `keygate serve` as a child process over `store`, with routes `/api/v1/slow` (the
/// upstream takes 3 s) and, from `extra` on, whatever else a test adds.
fn serve_binary_with(store: &TestStore, upstream: &str, extra: &str) -> Served {
    // A day-long window keeps rate-limit assertions off window boundaries.
    let config = format!(
        "[rate_limit]\nwindow_seconds = {DAY}\n\
         [[routes]]\nprefix = \"/api/v1/slow\"\nmethods = [\"GET\"]\nupstream = \"{upstream}\"\n{extra}"
    );
    process::serve(&process::write_config(store, "keygate", &config), &[])
}

fn serve_binary(store: &TestStore, upstream: &str) -> Served {
    serve_binary_with(store, upstream, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let upstream = upstream::Upstream::start().await;
    let store = TestStore::new().await;
    let Served { mut child, public, admin, .. } = serve_binary(&store, &upstream.url);
    let client = reqwest::Client::new();
    let secret = tenant_with_key(&client, &admin).await;

    // A request the upstream takes 3 s to answer is in flight when SIGTERM arrives.
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = format!("http://{public}/api/v1/slow");
        async move { client.get(url).bearer_auth(secret).send().await.map(|r| r.status()) }
    });
    while upstream.count() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process::signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = client.get(format!("http://{public}/healthz")).timeout(Duration::from_secs(2)).send().await;
    // Refused at once (the listener is closed before the drain), not left waiting out the drain.
    assert!(refused.as_ref().is_err_and(reqwest::Error::is_connect), "no new connections after SIGTERM: {refused:?}");

    assert_eq!(in_flight.await.unwrap().expect("the in-flight request finished"), 200);
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "keygate exits cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_admin_write_survives_kill_9() {
    let upstream = upstream::Upstream::start().await;
    let store = TestStore::new().await;
    let Served { mut child, admin, .. } = serve_binary(&store, &upstream.url);
    let client = reqwest::Client::new();
    assert_eq!(create_tenant(&client, &admin, "durable").await, 201);
    // SIGKILL right after the acknowledgement: no shutdown code runs.
    child.kill().unwrap();
    child.wait().unwrap();

    let Served { mut child, admin, .. } = serve_binary(&store, &upstream.url);
    let fetched =
        client.get(format!("http://{admin}/admin/v1/tenants/durable")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(fetched.status(), 200, "the acknowledged write was kept");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|c| c.server.header_read_timeout_ms = 300).await;
    let address = app.public.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(3));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.get("/healthz").await.status, 200, "others are still served");
}

#[tokio::test]
async fn without_an_admin_token_the_admin_listener_is_not_started_and_a_log_line_says_so() {
    let store = TestStore::new().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("serve")
        .env("KEYGATE_STORE_URL", &store.url)
        .env("KEYGATE_SERVER_LISTEN", "127.0.0.1:0")
        .env_remove("KEYGATE_SERVER_ADMIN_TOKEN")
        .env_remove("KEYGATE_CONFIG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.contains("keygate listening"))
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(lines.iter().any(|line| line.contains("admin listener is not started")), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_routes_and_limits_and_keeps_the_running_config_when_the_new_one_is_bad() {
    let upstream = upstream::Upstream::start().await;
    let store = TestStore::new().await;
    let Served { mut child, public, admin, logged } = serve_binary(&store, &upstream.url);
    let client = reqwest::Client::new();
    let secret = tenant_with_key(&client, &admin).await;
    let get = |path: &str| client.get(format!("http://{public}{path}")).bearer_auth(&secret).send();
    let hangup = || process::signal(&child, "HUP");

    // Under way when the reload comes: it finishes on the route it started with.
    let in_flight = tokio::spawn(get("/api/v1/slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new config: `/api/v1/slow` gone, `/api/v1/open` added, 3 requests a minute by default.
    let open = format!(
        "[rate_limit]\nlimit = 3\nwindow_seconds = {DAY}\n[[routes]]\nprefix = \"/api/v1/open\"\nmethods = [\"GET\"]\nupstream = \"{}\"\n",
        upstream.url
    );
    process::write_config(&store, "keygate", &open);
    hangup();
    let reloaded = std::time::Instant::now();
    let mut statuses = Vec::new();
    while statuses.is_empty() && reloaded.elapsed() < Duration::from_secs(1) {
        let status = get("/api/v1/open").await.unwrap().status().as_u16();
        if status != 404 {
            statuses.push(status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statuses, [200], "the new route answers within a second of the SIGHUP");
    assert_eq!(get("/api/v1/slow").await.unwrap().status(), 404, "the old one is gone");
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 200, "the request in flight finished");
    // The slow request counted too: 2 of 3 spent, so one more passes and the next is limited.
    assert_eq!(get("/api/v1/open").await.unwrap().status(), 200);
    assert_eq!(get("/api/v1/open").await.unwrap().status(), 429, "the reloaded default limit");

    // A config that does not load is refused, named, and the running one stays.
    process::write_config(
        &store,
        "keygate",
        "[[routes]]\nprefix = \"/api/v1/open\"\nmethods = []\nupstream = \"http://x\"\n",
    );
    hangup();
    let refusal = logged
        .iter()
        .find(|line| line.contains("configuration not reloaded"))
        .expect("a line says the configuration was not reloaded");
    assert!(refusal.contains("routes[0].methods"), "{refusal}");
    assert_eq!(get("/api/v1/open").await.unwrap().status(), 429, "the running routes and limit stay");
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP does not stop keygate");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_admin_token_at_once_and_logs_neither_value() {
    const ROTATED: &str = "a-rotated-admin-token-9876543210";
    let store = TestStore::new().await;
    let config = process::write_config(&store, "keygate", "");
    let Served { mut child, admin, logged, .. } = process::serve(&config, &[]);
    let client = reqwest::Client::new();
    let status = |token: &'static str| {
        let request = client.get(format!("http://{admin}/admin/v1/tenants")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(ADMIN_TOKEN).await, 200);
    assert_eq!(status(ROTATED).await, 401);

    let text = std::fs::read_to_string(&config).unwrap().replace(ADMIN_TOKEN, ROTATED);
    std::fs::write(&config, text).unwrap();
    process::signal(&child, "HUP");
    let reloaded = std::time::Instant::now();
    while status(ROTATED).await != 200 {
        // Before, SIGHUP kept the old token until a restart.
        assert!(reloaded.elapsed() < Duration::from_secs(1), "the new token does not work a second after SIGHUP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(ADMIN_TOKEN).await, 401, "the old token stopped working");
    child.kill().unwrap();
    child.wait().unwrap();
    let lines: Vec<String> = logged.try_iter().collect();
    assert!(lines.iter().any(|line| line.contains("reloaded")), "{lines:#?}");
    for line in &lines {
        assert!(!line.contains(ADMIN_TOKEN) && !line.contains(ROTATED), "a token in the log: {line}");
    }
}
