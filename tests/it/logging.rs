//! One structured log line per request, never carrying a secret.

use crate::common;

use std::time::Duration;

use common::logs;
use common::*;

// A current-thread runtime: the server's tasks run on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn each_request_logs_one_line_without_secrets() {
    let (logs, _guard) = logs::start();

    let app = spawn_app().await;
    let (key, secret) = app.browser_key("acme", &["sessions:create"]).await;
    let minted = app.mint(&secret, Some(ORIGIN)).await;
    let token = minted.body["data"]["sessionToken"].as_str().unwrap().to_owned();
    let refused = app.mint(&secret, Some("https://evil.example")).await;
    let invalid = app.mint(&format!("{secret}x"), Some(ORIGIN)).await;

    let text = logs.text();
    assert!(!text.contains(&secret), "the secret is never logged");
    assert!(!text.contains(&secret[..20]), "not even in part");
    assert!(!text.contains(&token), "the session token is never logged");
    assert!(!text.contains(ADMIN_TOKEN), "the admin token is never logged");

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &serde_json::Value| l["target"] == "keygate::request")
        .collect();
    let public: Vec<_> = lines.iter().filter(|l| l["fields"]["listener"] == "public").collect();
    assert_eq!(public.len(), 3, "one line per public request");
    for (line, seen) in public.iter().zip([&minted, &refused, &invalid]) {
        assert_eq!(line["fields"]["request_id"].as_str(), seen.header("x-request-id"));
        assert_eq!(line["fields"]["method"], "POST");
        assert_eq!(line["fields"]["path"], "/api/v1/sessions");
        assert_eq!(line["fields"]["status"], seen.status.as_u16());
        assert_eq!(line["fields"]["client"], "127.0.0.1");
    }
    assert_eq!(public[0]["fields"]["tenant"], "acme");
    assert_eq!(public[0]["fields"]["key_id"], key["id"]);
    assert_eq!(public[1]["fields"]["code"], "ORIGIN_NOT_ALLOWED");
    assert_eq!(public[2]["fields"]["code"], "API_KEY_INVALID");
    assert!(public[2]["fields"].get("key_id").is_none());
}

/// `keygate serve` as a child process, its stderr lines sent to the returned channel.
/// The running binary, its public `host:port`, the lines it logs from the one saying where it
/// listens on, and the lines before that one.
fn serve_binary(store: &TestStore) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>, Vec<String>) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"))
        .arg("serve")
        .env("KEYGATE_STORE_URL", &store.url)
        .env("KEYGATE_SERVER_LISTEN", "127.0.0.1:0")
        .env_remove("KEYGATE_SERVER_ADMIN_TOKEN")
        .env_remove("KEYGATE_CONFIG")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut before = Vec::new();
    let listening = received
        .iter()
        .find(|line| {
            before.push(line.clone());
            line.contains("keygate listening")
        })
        .expect("keygate logs where it listens");
    let line: serde_json::Value = serde_json::from_str(&listening).unwrap();
    (child, line["fields"]["public"].as_str().unwrap().to_owned(), received, before)
}

/// A start on a store migrated before (every start but a store's first) logs no database
/// notice: on PostgreSQL the migrator's `CREATE TABLE IF NOT EXISTS` would have said, at INFO,
/// that its table exists, on every start. (SQLite sends no notices: there this holds anyway.)
#[tokio::test]
async fn a_start_on_a_migrated_store_logs_no_database_notice() {
    let store = TestStore::new().await;
    for start in ["first", "second"] {
        let (mut child, _, _, started) = serve_binary(&store);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(started.iter().any(|line| line.contains("keygate listening")), "{started:#?}");
        let notices: Vec<&String> = started.iter().filter(|line| line.contains("sqlx::postgres::notice")).collect();
        assert!(notices.is_empty(), "the {start} start: {notices:#?}");
    }
}

/// The request lines among `lines`, waiting at most `wait` for more.
fn request_lines(lines: &std::sync::mpsc::Receiver<String>, wait: std::time::Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + wait;
    let mut found = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if line.contains("\"keygate::request\"") {
            found.push(line);
        }
    }
    found
}

#[tokio::test]
async fn request_lines_are_written_within_a_second_and_all_of_them_by_exit() {
    let store = TestStore::new().await;
    let (mut child, public, lines, _) = serve_binary(&store);
    let client = reqwest::Client::new();
    // A client's user agent is logged as it came, quotes and all, up to 200 characters.
    let agent = format!("probe \"1\" {}", "x".repeat(300));
    let get = |path: &'static str| client.get(format!("http://{public}{path}")).header("user-agent", &agent).send();
    for _ in 0..3 {
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
    }
    let written = request_lines(&lines, Duration::from_secs(1));
    assert_eq!(written.len(), 3, "written while serving");
    let line: serde_json::Value = serde_json::from_str(&written[0]).unwrap();
    assert_eq!(line["fields"]["client"], "127.0.0.1");
    assert_eq!(line["fields"]["user_agent"].as_str(), Some(&agent[..200]));

    // Requests answered just before SIGTERM: their lines are written before the process exits.
    for _ in 0..5 {
        assert_eq!(get("/.well-known/jwks.json").await.unwrap().status(), 200);
    }
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let written = request_lines(&lines, Duration::from_secs(5));
    assert_eq!(written.len(), 5, "{written:?}");
    assert!(written.iter().all(|line| line.contains("/.well-known/jwks.json")));
}

// A current-thread runtime: the server's tasks run on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn proxied_lines_carry_the_upstream_status_and_time_and_the_client_a_trusted_proxy_names() {
    let (logs, _guard) = logs::start();

    // The test client connects from 127.0.0.1: a trusted proxy here.
    let (app, _upstream) = spawn_gateway(|c| c.proxy.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let get = |path: &str| {
        app.client
            .get(format!("{}{path}", app.public))
            .bearer_auth(&secret)
            .header("x-forwarded-for", "198.51.100.4, 203.0.113.9, 127.0.0.5")
            .header("user-agent", "keygate-test/1.0")
            .send()
    };
    assert_eq!(get("/api/v1/orders").await.unwrap().status(), 200);
    assert_eq!(get("/api/v1/orders?status=503").await.unwrap().status(), 503);
    // Refused before the upstream: no upstream fields.
    let refused = app.request("GET", "/api/v1/orders").response().await;
    assert_eq!(refused.status(), 401);

    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["target"] == "keygate::request" && l["fields"]["listener"] == "public")
        .map(|l| l["fields"].clone())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, upstream_status) in lines.iter().zip([200, 503]) {
        assert_eq!(line["status"], upstream_status);
        assert_eq!(line["upstream_status"], upstream_status, "the upstream's status, apart from keygate's outcome");
        let upstream_us = line["upstream_us"].as_u64().expect("the upstream's time");
        assert!(upstream_us > 0 && upstream_us <= line["elapsed_us"].as_u64().unwrap(), "{line}");
        assert_eq!(line["client"], "203.0.113.9", "the nearest forwarded address that is not a trusted proxy");
        assert_eq!(line["user_agent"], "keygate-test/1.0");
    }
    assert_eq!(lines[2]["code"], "API_KEY_REQUIRED");
    assert!(lines[2].get("upstream_status").is_none() && lines[2].get("upstream_us").is_none(), "{}", lines[2]);
    assert_eq!(lines[2]["client"], "127.0.0.1", "no X-Forwarded-For: the peer");
}

// A current-thread runtime: the server's tasks run on this thread, under this subscriber. Here,
// not in tests/it/tls.rs: a test binary whose other tests log the same line on threads without a
// capturing subscriber can leave it uncaptured (tracing caches a callsite's interest).
#[tokio::test(flavor = "current_thread")]
async fn a_failed_tls_handshake_with_the_upstream_is_logged_with_its_reason() {
    let (logs, _guard) = logs::start();
    let ca = common::tls::TestCa::new("an authority nobody trusts");
    let upstream = common::upstream::Upstream::start_tls(&ca.leaf(&["localhost"])).await;
    let (app, _) = spawn_routed(|_| gateway_routes(&upstream.url), |_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    app.request("GET", "/api/v1/orders").key(&secret).send().await.assert_error(502, "UPSTREAM_UNAVAILABLE");
    keygate::logging::flush();
    let text = logs.text();
    let warning = text.lines().find(|l| l.contains("upstream request failed")).expect("a log line says why");
    assert!(warning.contains("UnknownIssuer"), "the TLS reason is in the log: {warning}");
}
