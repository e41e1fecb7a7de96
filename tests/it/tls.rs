//! TLS with real certificates made in the test (rcgen): `https://` upstreams, verified against
//! the system's roots plus `proxy.ca_file`.

use crate::common;

use common::tls::TestCa;
use common::upstream::Upstream;
use common::*;

/// A keygate routing to a TLS upstream whose certificate, made by a CA of the test's own, names
/// `names`; `proxy.ca_file` holds that CA when `trusted`.
async fn https_gateway(names: &[&str], trusted: bool) -> (TestApp, Upstream, tempfile::TempDir) {
    let ca = TestCa::new("keygate test CA");
    let upstream = Upstream::start_tls(&ca.leaf(names)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = trusted.then(|| ca.write(dir.path(), "ca.pem").to_str().unwrap().to_owned());
    let (app, _) = spawn_routed(|_| gateway_routes(&upstream.url), |c| c.proxy.ca_file = ca_file).await;
    (app, upstream, dir)
}

#[tokio::test]
async fn a_guarded_request_reaches_an_https_upstream_whose_authority_is_in_ca_file() {
    let (app, upstream, _dir) = https_gateway(&["localhost"], true).await;
    let (_, secret) = app.orders_key("acme", &["orders:read", "orders:write"]).await;

    for method in ["GET", "POST", "GET"] {
        let seen = app.request(method, "/api/v1/orders").key(&secret).send().await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        assert_eq!(seen.body["ok"], true);
    }
    let received = upstream.last();
    assert_eq!(received.header("x-keygate-tenant"), Some("acme"));
    assert_eq!(received.header("x-keygate-channel"), Some("server"));
    assert_eq!(received.header("host"), Some(upstream.authority.as_str()), "the upstream's own name, as in SNI");
    assert!(received.header("authorization").is_none(), "the key never reaches the upstream");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn an_upstream_certificate_from_an_unknown_authority_is_502_and_nothing_is_sent() {
    let (app, upstream, _dir) = https_gateway(&["localhost"], false).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    app.request("GET", "/api/v1/orders").key(&secret).send().await.assert_error(502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(upstream.count(), 0, "no request went over an unverified connection");
    // The reason in the log: tests/it/logging.rs, where every test captures what it logs.
}

#[tokio::test]
async fn a_certificate_for_another_name_is_502() {
    let (app, upstream, _dir) = https_gateway(&["other.example"], true).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    app.request("GET", "/api/v1/orders").key(&secret).send().await.assert_error(502, "UPSTREAM_UNAVAILABLE");
    assert_eq!(upstream.count(), 0);
}

#[test]
fn a_missing_or_empty_ca_file_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for file in [dir.path().join("missing.pem"), empty] {
        let toml = format!("[proxy]\nca_file = {:?}\n", file.to_str().unwrap());
        let path = dir.path().join("keygate.toml");
        std::fs::write(&path, toml).unwrap();
        let error = keygate::config::Config::load(Some(&path), std::iter::empty()).unwrap_err().to_string();
        assert!(error.contains("proxy.ca_file"), "{error}");
    }
}

/// `curl` over TLS to keygate's public listener at `localhost:port`, trusting `ca`: the HTTP
/// version and status, or curl's failure.
fn curl(port: u16, ca: &std::path::Path, http: &str, path: &str) -> String {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_version} %{http_code}", http, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), &format!("https://localhost:{port}{path}")])
        .output()
        .expect("curl runs");
    match output.status.success() {
        true => String::from_utf8_lossy(&output.stdout).into_owned(),
        false => format!("curl failed with {}", output.status),
    }
}

fn write_leaf(dir: &std::path::Path, leaf: &common::tls::Leaf) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_serves_http1_and_http2_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (TestCa::new("first CA"), TestCa::new("second CA"));
    let (first_ca, second_ca) = (first.write(dir.path(), "first.pem"), second.write(dir.path(), "second.pem"));
    let (cert, key) = write_leaf(dir.path(), &first.leaf(&["localhost"]));
    let app = spawn_with(|c| {
        c.server.tls_cert_file = Some(cert);
        c.server.tls_key_file = Some(key);
    })
    .await;
    let port: u16 = app.public.rsplit(':').next().unwrap().parse().unwrap();
    let (_, secret) = app.browser_key("acme", &["sessions:create"]).await;

    // The Rust client (hyper-util, with keygate's own TLS client configuration), HTTP/1.1.
    let tls = keygate::tls::upstream_client_config(Some(first_ca.to_str().unwrap())).unwrap();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(std::sync::Arc::unwrap_or_clone(tls))
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<axum::body::Bytes>>(connector);
    let mint = http::Request::post(format!("https://localhost:{port}/api/v1/sessions"))
        .header("authorization", format!("Bearer {secret}"))
        .header("origin", ORIGIN)
        .body(http_body_util::Full::default())
        .unwrap();
    let minted = client.request(mint).await.expect("a TLS connection to keygate");
    assert_eq!(minted.status(), 201);
    assert_eq!(minted.version(), http::Version::HTTP_11);

    // curl: HTTP/2 by ALPN, and HTTP/1.1.
    assert_eq!(curl(port, &first_ca, "--http2", "/healthz"), "2 200");
    assert_eq!(curl(port, &first_ca, "--http1.1", "/healthz"), "1.1 200");
    assert!(curl(port, &second_ca, "--http2", "/healthz").starts_with("curl failed"), "not trusted yet");

    // The certificate renewed on disk, by another authority: served within seconds, no restart.
    write_leaf(dir.path(), &second.leaf(&["localhost"]));
    let started = std::time::Instant::now();
    while curl(port, &second_ca, "--http2", "/healthz") != "2 200" {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "the renewed certificate was not picked up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(curl(port, &first_ca, "--http2", "/healthz").starts_with("curl failed"), "the old one is gone");
}

#[test]
fn a_bad_or_half_configured_listener_certificate_is_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("keygate test CA");
    let (cert, key) = write_leaf(dir.path(), &ca.leaf(&["localhost"]));
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, ca.leaf(&["localhost"]).key_pem).unwrap();
    let load = |settings: &str| {
        let path = dir.path().join("keygate.toml");
        std::fs::write(&path, format!("[server]\n{settings}")).unwrap();
        keygate::config::Config::load(Some(&path), std::iter::empty()).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(load(&format!("tls_cert_file = {cert:?}\ntls_key_file = {key:?}\n")), Ok(()));
    for (settings, named) in [
        (format!("tls_cert_file = {cert:?}\n"), "server.tls_key_file"),
        (format!("tls_key_file = {key:?}\n"), "server.tls_cert_file"),
        (format!("tls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = {key:?}\n"), "server.tls_cert_file"),
        (
            format!("tls_cert_file = {cert:?}\ntls_key_file = {:?}\n", other_key.to_str().unwrap()),
            "server.tls_key_file",
        ),
        (format!("tls_cert_file = {key:?}\ntls_key_file = {key:?}\n"), "server.tls_cert_file"),
    ] {
        let error = load(&settings).unwrap_err();
        assert!(error.contains(named), "{settings}: {error}");
    }
}

/// A keygate whose public listener speaks TLS for `localhost`, routed to a plain recording
/// upstream; returns it with the CA's file and the listener's port.
async fn tls_listener(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut keygate::config::Config),
) -> (TestApp, Upstream, std::path::PathBuf, u16) {
    let ca = TestCa::new("listener CA");
    let ca_file = ca.write(dir, "ca.pem");
    let (cert, key) = write_leaf(dir, &ca.leaf(&["localhost"]));
    let (app, upstream) = spawn_gateway(|c| {
        c.server.tls_cert_file = Some(cert);
        c.server.tls_key_file = Some(key);
        tweak(c);
    })
    .await;
    let port: u16 = app.public.rsplit(':').next().unwrap().parse().unwrap();
    (app, upstream, ca_file, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_tls_listener_is_forwarded_as_https() {
    let dir = tempfile::tempdir().unwrap();
    let (app, upstream, ca_file, port) = tls_listener(dir.path(), |_| {}).await;
    let (_, secret) = app.orders_key("acme", &["orders:read"]).await;
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&ca_file)
        .args(["-H", &format!("Authorization: Bearer {secret}"), "-H", "X-Forwarded-Proto: http"])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), &format!("https://localhost:{port}/api/v1/orders")])
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200");
    // Before, `http`: keygate's own value ignored how the request came (SPEC §17).
    assert_eq!(upstream.last().headers.get("x-forwarded-proto").map(|v| v.to_str().unwrap()), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_head_deadline_runs_from_accept_through_the_tls_handshake() {
    const DEADLINE: std::time::Duration = std::time::Duration::from_millis(2000);
    let dir = tempfile::tempdir().unwrap();
    let (_app, _upstream, ca_file, port) =
        tls_listener(dir.path(), |c| c.server.header_read_timeout_ms = DEADLINE.as_millis() as u64).await;
    let connected = std::time::Instant::now();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A slow handshake that still ends within the deadline, then no request at all.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let tls = keygate::tls::client_config(Some(ca_file.to_str().unwrap()), "ca").unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = connector.connect(name, stream).await.expect("the handshake, within the deadline");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE * 2, tokio::io::AsyncReadExt::read(&mut stream, &mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed, without an answer: {read:?}");
    // Before, the clock started again after the handshake: closed at 1.5 s + 2 s.
    let closed = connected.elapsed();
    assert!(
        closed >= DEADLINE - std::time::Duration::from_millis(100) && closed < std::time::Duration::from_millis(2900),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_speaks_tls_and_the_cli_sends_its_token_only_over_tls_or_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("admin CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let admin_dir = dir.path().join("admin");
    std::fs::create_dir(&admin_dir).unwrap();
    let (cert, key) = write_leaf(&admin_dir, &ca.leaf(&["localhost"]));
    let app = spawn_with(|c| {
        c.server.admin_tls_cert_file = Some(cert);
        c.server.admin_tls_key_file = Some(key);
    })
    .await;
    assert!(app.admin.starts_with("https://"));
    let port = app.admin.rsplit(':').next().unwrap().to_owned();
    let cli = |url: &str, ca: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keygate"));
        command.args(["--admin-url", url, "-o", "json"]).env("KEYGATE_SERVER_ADMIN_TOKEN", ADMIN_TOKEN);
        command.env_remove("KEYGATE_CONFIG").env_remove("KEYGATE_ADMIN_URL").env_remove("KEYGATE_ADMIN_CA_FILE");
        if let Some(ca) = ca {
            command.arg("--admin-ca-file").arg(ca);
        }
        let output = command.args(["tenant", "create", "--name", "Acme"]).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let url = format!("https://localhost:{port}");
    let (code, stdout, stderr) = cli(&url, Some(&ca_file));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("\"name\": \"Acme\"") || stdout.contains("\"name\":\"Acme\""), "{stdout}");
    // Unverified: refused before the token is sent.
    let (code, _, stderr) = cli(&url, None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the admin API"), "{stderr}");
    // Plain HTTP to anything but loopback: refused, nothing sent.
    let (code, _, stderr) = cli("http://192.0.2.1:8081", None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("only to a loopback address"), "{stderr}");
    assert!(!stderr.contains(ADMIN_TOKEN));
    // The listener speaks nothing but TLS.
    let plain =
        reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics")).bearer_auth(ADMIN_TOKEN).send().await;
    assert!(!plain.is_ok_and(|answer| answer.status().is_success()), "plain HTTP is not served");
}
