//! Drives N sequential requests (default 3000) through a keygate gateway to an in-process
//! upstream, on one thread, for an instruction-count profile that machine noise cannot move:
//!
//! ```sh
//! cargo build --profile bench --example profile_gateway
//! valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/examples/profile_gateway 3000
//! callgrind_annotate --inclusive=yes cg.out | grep keygate::
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
    let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/v1/orders", public.local_addr().unwrap());
    tokio::spawn(app.serve(keygate::app::Listeners::public(public), std::future::pending()));
    let client = reqwest::Client::new();
    let n: usize = std::env::args().nth(1).map_or(3000, |a| a.parse().unwrap());
    for _ in 0..n {
        let r = client.get(&url).bearer_auth(&secret).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
}
