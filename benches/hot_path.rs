//! The hot path, measured side by side in one run (see docs/performance.md):
//!
//! - `pipeline/*`: `Pipeline::check` in process, for each kind of request, next to the floor
//!   of one SHA-256 of a secret;
//! - `http/*`: a request through the gateway next to the same request sent straight to the
//!   upstream, over loopback, one at a time;
//! - `http_64_concurrent/*`: the same with 64 requests in flight, where per-request CPU cost
//!   shows rather than one round trip's latency.
//!
//! Run: `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method};
use keygate::app::App;
use keygate::config::{Config, RouteConfig};
use keygate::pipeline::Policy;
use serde_json::json;

const ORIGIN: &str = "http://localhost:3000";

struct Fixture {
    app: App,
    secret: String,
    token: String,
    _dir: tempfile::TempDir,
}

async fn fixture(upstream: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.url = format!("sqlite://{}", dir.path().join("bench.db").display()).parse().expect("a SQLite URL");
    config.rate_limit.limit = 1_000_000_000;
    config.routes = vec![RouteConfig {
        prefix: "/api/v1/orders".to_owned(),
        methods: vec!["GET".parse().unwrap(), "POST".parse().unwrap()],
        upstream: Some(upstream.parse().unwrap()),
        module: Some("orders".to_owned()),
        scope: Some(keygate::scope::Scope::parse("orders:read").unwrap()),
        write: None,
        forward_meta: false,
    }];
    let app = App::build(config).await.unwrap();
    let tenant = json!({ "id": "acme", "name": "Acme", "modules": ["orders"] });
    app.admin.create_tenant("bench", tenant.to_string().as_bytes()).await.unwrap();
    let key = json!({ "name": "k", "scopes": ["sessions:create", "orders:read"], "allowedOrigins": [ORIGIN] });
    let secret = app.admin.create_key("bench", "acme", key.to_string().as_bytes()).await.unwrap().secret;
    let record =
        app.admin.key(&app.admin.keys("acme", &Default::default()).await.unwrap().data[0].key.id).await.unwrap().key;
    let origin = keygate::origin::Origin::parse(ORIGIN).unwrap();
    let token = app.pipeline.sessions().mint(&record, &origin, keygate::time::now_millis()).unwrap().token;
    Fixture { app, secret: secret.expect("a made secret"), token, _dir: dir }
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let f = runtime.block_on(fixture("http://127.0.0.1:9"));
    let policy = Policy::scope("orders:read").unwrap().with_module("orders");
    let bearer = format!("Bearer {}", f.secret);
    let unknown = format!("Bearer {}", keygate::secret::generate_secret("kg").secret);
    let cases = [
        ("server_read", Method::GET, headers(&[("authorization", &bearer)])),
        ("browser_read", Method::GET, headers(&[("authorization", &bearer), ("origin", ORIGIN)])),
        (
            "browser_write_with_session",
            Method::POST,
            headers(&[("authorization", &bearer), ("origin", ORIGIN), ("x-session-token", &f.token)]),
        ),
        ("unknown_key", Method::GET, headers(&[("authorization", &unknown)])),
        ("malformed_key", Method::GET, headers(&[("authorization", "Bearer kg_not-a-key")])),
    ];
    let mut group = c.benchmark_group("pipeline");
    group.bench_function("sha256_of_secret_floor", |b| b.iter(|| keygate::secret::hash_secret(black_box(&f.secret))));
    for (name, method, headers) in &cases {
        // Warm the cache (and check the case behaves as named).
        let decision = runtime.block_on(f.app.pipeline.check(method, headers, None, &policy));
        assert_eq!(decision.outcome.is_ok(), !name.ends_with("_key"), "{name}");
        group.bench_function(*name, |b| {
            b.iter(|| runtime.block_on(f.app.pipeline.check(black_box(method), black_box(headers), None, &policy)))
        });
    }
    group.finish();
}

fn http(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (upstream, f, gateways, plain, plain_on_ours) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = format!("http://{}", listener.local_addr().unwrap());
        let echo = axum::Router::new().fallback(|| async { axum::Json(json!({ "ok": true })) });
        tokio::spawn(async move { axum::serve(listener, echo).await });
        let f = fixture(&upstream).await;
        // keygate as configured by default, and with the header-read timeout off.
        let mut gateways = Vec::new();
        for header_read_timeout_ms in [10_000, 0] {
            let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            gateways.push(format!("http://{}", public.local_addr().unwrap()));
            let mut config = f.app.config.clone();
            config.server.header_read_timeout_ms = header_read_timeout_ms;
            let app = App::build(config).await.unwrap();
            tokio::spawn(app.serve(keygate::app::Listeners::public(public), std::future::pending()));
        }
        let plain = plain_proxy(&upstream, false).await;
        let plain_on_ours = plain_proxy(&upstream, true).await;
        (upstream, f, gateways, plain, plain_on_ours)
    });
    let client = Arc::new(reqwest::Client::new());
    let runtime = &runtime;
    let get = |url: String, secret: Option<String>| {
        let client = Arc::clone(&client);
        move || {
            let mut request = client.get(&url);
            if let Some(secret) = &secret {
                request = request.bearer_auth(secret);
            }
            let response = runtime.block_on(request.send()).unwrap();
            assert_eq!(response.status(), 200);
            runtime.block_on(response.bytes()).unwrap()
        }
    };
    let mut group = c.benchmark_group("http");
    let direct = get(format!("{upstream}/api/v1/orders"), None);
    group.bench_function("direct_to_upstream", |b| b.iter(&direct));
    let proxied = get(format!("{plain}/api/v1/orders"), Some(f.secret.clone()));
    group.bench_function("through_plain_proxy", |b| b.iter(&proxied));
    let proxied_on_ours = get(format!("{plain_on_ours}/api/v1/orders"), Some(f.secret.clone()));
    group.bench_function("through_plain_proxy_on_keygates_server", |b| b.iter(&proxied_on_ours));
    let through = get(format!("{}/api/v1/orders", gateways[0]), Some(f.secret.clone()));
    group.bench_function("through_keygate", |b| b.iter(&through));
    let through = get(format!("{}/api/v1/orders", gateways[1]), Some(f.secret.clone()));
    group.bench_function("through_keygate_without_header_timeout", |b| b.iter(&through));
    group.finish();

    // 64 requests in flight at once: per-request CPU cost rather than one round trip's latency.
    let batch = |url: String, secret: Option<String>| {
        let client = Arc::clone(&client);
        move || {
            let requests = (0..64).map(|_| {
                let mut request = client.get(&url);
                if let Some(secret) = &secret {
                    request = request.bearer_auth(secret);
                }
                async move { request.send().await.unwrap().bytes().await.unwrap() }
            });
            runtime.block_on(futures_util::future::join_all(requests))
        }
    };
    let mut group = c.benchmark_group("http_64_concurrent");
    let direct = batch(format!("{upstream}/api/v1/orders"), None);
    group.bench_function("direct_to_upstream", |b| b.iter(&direct));
    let proxied = batch(format!("{plain}/api/v1/orders"), None);
    group.bench_function("through_plain_proxy", |b| b.iter(&proxied));
    let through = batch(format!("{}/api/v1/orders", gateways[0]), Some(f.secret.clone()));
    group.bench_function("through_keygate", |b| b.iter(&through));
    group.finish();
}

/// The baseline for keygate's gateway: the same hyper client forwarding every request as it
/// is, with no checks and no header rewriting; served by `axum::serve`, or by keygate's own
/// connection loop (`on_ours`), to tell the serving cost from the checking cost.
async fn plain_proxy(upstream: &str, on_ours: bool) -> String {
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    let client: Client<HttpConnector, axum::body::Body> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let authority: http::uri::Authority = upstream.trim_start_matches("http://").parse().unwrap();
    let proxy = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let client = client.clone();
        let authority = authority.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
            parts.uri = http::Uri::builder().scheme("http").authority(authority).path_and_query(path).build().unwrap();
            let response = client.request(http::Request::from_parts(parts, body)).await.unwrap();
            response.map(axum::body::Body::new)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    if on_ours {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        std::mem::forget(stop);
        let limits = keygate::edge::limits::ConnectionLimits {
            head_deadline: Some(std::time::Duration::from_secs(10)),
            max_header_bytes: 32 * 1024,
            max_connections: 10_000,
            drain: std::time::Duration::from_secs(30),
        };
        let routing = keygate::edge::listener::Routing::Caller(tokio::sync::watch::Sender::new(proxy).subscribe());
        let shutdown = keygate::shutdown::Shutdown { draining: stopped.clone(), stopped };
        tokio::spawn(keygate::edge::listener::serve("bench", listener, routing, limits, None, shutdown, None));
    } else {
        tokio::spawn(async move { axum::serve(listener, proxy).await });
    }
    address
}

criterion_group!(benches, pipeline, http);
criterion_main!(benches);
