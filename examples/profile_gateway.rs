//! Drives N sequential requests (default 3000) through keygate, on one thread, for an
//! instruction-count or allocation profile that machine noise cannot move. The second argument
//! names what is asked: `guarded` (default: a guarded GET through the gateway to an in-process
//! upstream), `401` (the same GET without a key), `mint` (a session minted for a browser's
//! origin) or `verify` (`POST /v1/verify` on the decision listener, for the first key and route):
//!
//! ```sh
//! cargo build --profile bench --example profile_gateway
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/profile_gateway 3000
//! callgrind_annotate --inclusive=yes cg.out | grep keygate::
//! valgrind --tool=dhat --dhat-out-file=verify.dhat target/release/examples/profile_gateway 3000 verify
//! ```
//!
//! See docs/performance.md.

use keygate::app::App;
use keygate::config::{Config, RouteConfig};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("http://{}", listener.local_addr().unwrap());
    let echo = axum::Router::new().fallback(|| async { axum::Json(json!({ "ok": true })) });
    tokio::spawn(async move { axum::serve(listener, echo).await });
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", dir.path().join("profile.db").display()).parse().unwrap();
    config.rate_limit.limit = 1_000_000_000;
    config.routes = vec![RouteConfig {
        prefix: "/api/v1/orders".into(),
        methods: vec!["GET".parse().unwrap()],
        upstream: Some(upstream.parse().unwrap()),
        module: None,
        scope: None,
        write: None,
        forward_meta: false,
    }];
    let app = App::build(config).await.unwrap();
    app.admin.create_tenant("bench", br#"{"id":"acme","name":"Acme"}"#).await.unwrap();
    let secret = app
        .admin
        .create_key("bench", "acme", br#"{"name":"k","scopes":[]}"#)
        .await
        .unwrap()
        .secret
        .expect("a made secret");
    let browser = br#"{"name":"b","scopes":["sessions:create"],"allowedOrigins":["https://app.example"]}"#;
    let minting = app.admin.create_key("bench", "acme", browser).await.unwrap().secret.expect("a made secret");
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let decision = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/orders", public.local_addr().unwrap());
    let sessions = format!("http://{}/api/v1/sessions", public.local_addr().unwrap());
    let verify = format!("http://{}/v1/verify", decision.local_addr().unwrap());
    let listeners = keygate::app::Listeners { public, admin: None, decision: Some(decision) };
    tokio::spawn(app.serve(listeners, std::future::pending()));
    let client = reqwest::Client::new();
    let n: usize = std::env::args().nth(1).map_or(3000, |a| a.parse().unwrap());
    let scenario = std::env::args().nth(2).unwrap_or_else(|| "guarded".into());
    let question = json!({ "key": secret, "method": "GET", "path": "/api/v1/orders" }).to_string();
    for _ in 0..n {
        let (request, status) = match scenario.as_str() {
            "guarded" => (client.get(&url).bearer_auth(&secret), 200),
            "401" => (client.get(&url), 401),
            "mint" => (client.post(&sessions).bearer_auth(&minting).header("origin", "https://app.example"), 201),
            "verify" => (client.post(&verify).body(question.clone()), 200),
            other => panic!("no scenario {other}: guarded, 401, mint or verify"),
        };
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), status);
        let body = r.bytes().await.unwrap();
        if scenario == "verify" {
            assert!(body.windows(12).any(|w| w == br#""valid":true"#), "{body:?}");
        }
    }
}
