//! Test harness: a real keygate on 127.0.0.1:0 (public and admin listeners) over a fresh
//! SQLite file, with typed helpers that speak HTTP to it.

pub mod chromium;
pub mod cli;
pub mod front;
pub mod logs;
pub mod process;
pub mod raw;
pub mod redis;
pub mod redis_cluster;
pub mod tls;
pub mod upstream;
pub mod ws_upstream;

use std::cell::Cell;
use std::sync::{Arc, LazyLock};

use keygate::app::App;
use keygate::config::Config;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const ORIGIN: &str = "http://localhost:3000";
/// A day-long window keeps rate-limit assertions off window boundaries.
pub const DAY: u64 = 86_400;

/// keygate's metrics are per process, and every test of this binary runs in the one process: a
/// test that counts a metric exactly runs alone ([`metrics_alone`]), and every other keygate
/// started in process holds a share of this ([`metrics_share`]) while it lives.
static METRICS: LazyLock<Arc<tokio::sync::RwLock<()>>> = LazyLock::new(Arc::default);

thread_local! {
    /// Set on a test's thread while it runs alone: the keygates it starts take no share.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Held by a test whose metrics no other test may move: until it drops, no other keygate runs
/// in this process. Take it first, before starting keygate.
pub struct Alone {
    _guard: tokio::sync::OwnedRwLockWriteGuard<()>,
}

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.set(false);
    }
}

/// Waits until no other keygate runs in this process, and keeps it so while held.
pub async fn metrics_alone() -> Alone {
    let guard = Arc::clone(&METRICS).write_owned().await;
    ALONE.set(true);
    Alone { _guard: guard }
}

/// What an in-process keygate holds while it lives; `None` within a test that runs alone.
pub async fn metrics_share() -> Option<tokio::sync::OwnedRwLockReadGuard<()>> {
    if ALONE.get() { None } else { Some(Arc::clone(&METRICS).read_owned().await) }
}

pub struct TestApp {
    pub public: String,
    pub admin: String,
    /// The decision listener's base URL, when `server.decision_listen` is set (port 0 is fine).
    pub decision: Option<String>,
    pub client: reqwest::Client,
    pub test_store: Arc<TestStore>,
    /// The running instance's own store handle.
    pub store: Arc<dyn keygate::store::Store>,
    /// The configuration it started with.
    pub config: Config,
    /// What SIGHUP calls in the binary: set once the instance serves.
    reloader: Arc<std::sync::OnceLock<Arc<keygate::reload::Reloader>>>,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<Result<(), keygate::app::StartError>>,
    _metrics: Option<tokio::sync::OwnedRwLockReadGuard<()>>,
}

/// A fresh, empty store for one test: a SQLite file in a temporary folder, or — when
/// `TEST_POSTGRES_URL` names a PostgreSQL server (`postgres://user:password@host:port`,
/// no database) — a new database of its own there, connected to with the URL parameters in
/// `TEST_POSTGRES_PARAMS` (`scripts/test`: `sslmode=verify-full&sslrootcert=…`). `scripts/test`
/// runs the suite both ways.
pub struct TestStore {
    pub url: String,
    /// A scratch folder (config files, the SQLite file).
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub async fn new() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match std::env::var("TEST_POSTGRES_URL") {
            Ok(server) => {
                use sqlx::Connection;
                let params = std::env::var("TEST_POSTGRES_PARAMS").map(|p| format!("?{p}")).unwrap_or_default();
                let name = format!("kg_test_{}", keygate::secret::random_base62(12).to_lowercase());
                let mut admin = sqlx::postgres::PgConnection::connect(&format!("{server}/postgres{params}"))
                    .await
                    .expect("TEST_POSTGRES_URL is set but the server cannot be reached");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
                format!("{server}/{name}{params}")
            }
            Err(_) => format!("sqlite://{}", dir.path().join("keygate.db").display()),
        };
        Arc::new(Self { url, dir })
    }

    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres")
    }
}

/// The SHA-256 of `secret` in lower-case hex: what an import sends as `importHash`.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The routes gateway tests run against, all to `upstream`.
pub fn gateway_routes(upstream: &str) -> Vec<keygate::config::RouteConfig> {
    let route = |prefix: &str, methods: &[&str], module: Option<&str>, scope: Option<&str>, write: Option<bool>| {
        keygate::config::RouteConfig {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            upstream: Some(upstream.parse().unwrap()),
            module: module.map(str::to_owned),
            scope: scope.map(|scope| keygate::scope::Scope::parse(scope).unwrap()),
            write,
            forward_meta: false,
        }
    };
    vec![
        route("/api/v1/orders", &["GET"], Some("orders"), Some("orders:read"), None),
        route(
            "/api/v1/orders",
            &["POST", "PUT", "PATCH", "DELETE", "PURGE"],
            Some("orders"),
            Some("orders:write"),
            None,
        ),
        route("/api/v1/search", &["POST"], None, Some("orders:read"), Some(false)),
        route("/api/v1/slow", &["GET"], None, None, None),
        route("/api/v1/open", &["GET", "POST"], None, None, None),
    ]
}

/// A keygate whose routes lead to a fresh recording upstream.
pub async fn spawn_gateway(tweak: impl FnOnce(&mut Config)) -> (TestApp, upstream::Upstream) {
    spawn_routed(gateway_routes, tweak).await
}

/// [`spawn_gateway`] over `test_store` (so a second start is a restart, or a second instance).
pub async fn spawn_gateway_in(
    test_store: Arc<TestStore>,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, upstream::Upstream) {
    spawn_routed_in(test_store, gateway_routes, tweak).await
}

/// A keygate with the routes `routes` makes for a fresh recording upstream's URL.
pub async fn spawn_routed(
    routes: impl FnOnce(&str) -> Vec<keygate::config::RouteConfig>,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, upstream::Upstream) {
    spawn_routed_in(TestStore::new().await, routes, tweak).await
}

async fn spawn_routed_in(
    test_store: Arc<TestStore>,
    routes: impl FnOnce(&str) -> Vec<keygate::config::RouteConfig>,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, upstream::Upstream) {
    let upstream = upstream::Upstream::start().await;
    let routes = routes(&upstream.url);
    let app = spawn_in(test_store, move |config| {
        config.routes = routes;
        tweak(config);
    })
    .await;
    (app, upstream)
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_in(TestStore::new().await, tweak).await
}

/// Starts keygate over `test_store` (so a second start is a restart, or a second instance).
pub async fn spawn_in(test_store: Arc<TestStore>, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let metrics = metrics_share().await;
    let mut config = Config::default();
    config.store.url = test_store.url.parse().expect("a store URL");
    config.server.admin_token = Some(ADMIN_TOKEN.to_owned());
    tweak(&mut config);
    let app = App::build(config.clone()).await.expect("keygate builds");
    let store = Arc::clone(&app.store);
    let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if config.server.admin_tls_cert_file.is_some() { "https" } else { "http" };
    let public_url = format!("http://{}", public.local_addr().unwrap());
    let admin_url = format!("{scheme}://{}", admin.local_addr().unwrap());
    let decision = match config.server.decision_listen {
        Some(address) => Some(TcpListener::bind(address).await.unwrap()),
        None => None,
    };
    let decision_url = decision.as_ref().map(|listener| format!("http://{}", listener.local_addr().unwrap()));
    let (stop, stopped) = oneshot::channel::<()>();
    let reloader = Arc::new(std::sync::OnceLock::new());
    let set = Arc::clone(&reloader);
    let shutdown = async move {
        let _ = stopped.await;
    };
    let listeners = keygate::app::Listeners { public, admin: Some(admin), decision };
    let served = tokio::spawn(app.serve_reloading(listeners, shutdown, move |reloader| {
        let _ = set.set(reloader);
    }));
    TestApp {
        public: public_url,
        admin: admin_url,
        decision: decision_url,
        client: reqwest::Client::new(),
        test_store,
        store,
        config,
        reloader,
        stop: Some(stop),
        served,
        _metrics: metrics,
    }
}

/// A response read whole: what a user sees.
#[derive(Debug)]
pub struct Seen {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// A request being built by [`TestApp::request`]; nothing is sent until [`Call::send`].
pub struct Call {
    request: reqwest::RequestBuilder,
}

impl Call {
    /// `Authorization: Bearer <secret>` (also when `secret` is empty: a header with no key).
    pub fn key(self, secret: &str) -> Self {
        Self { request: self.request.bearer_auth(secret) }
    }

    /// `Origin`, when given.
    pub fn origin(self, origin: impl MaybeGiven) -> Self {
        self.header_if("origin", origin.given())
    }

    /// `X-Session-Token`, when given.
    pub fn session(self, token: impl MaybeGiven) -> Self {
        self.header_if("x-session-token", token.given())
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        Self { request: self.request.header(name, value) }
    }

    pub fn body(self, body: impl Into<reqwest::Body>) -> Self {
        Self { request: self.request.body(body) }
    }

    pub fn json(self, body: &Value) -> Self {
        Self { request: self.request.json(body) }
    }

    fn header_if(self, name: &str, value: Option<&str>) -> Self {
        match value {
            Some(value) => self.header(name, value),
            None => self,
        }
    }

    /// Sends it and reads the whole response.
    pub async fn send(self) -> Seen {
        Seen::from(self.response().await).await
    }

    /// Sends it and hands back the response unread.
    pub async fn response(self) -> Response {
        self.request.send().await.expect("request")
    }
}

/// A header value a test has, or (as an `Option`) may have.
pub trait MaybeGiven {
    fn given(&self) -> Option<&str>;
}

impl MaybeGiven for &str {
    fn given(&self) -> Option<&str> {
        Some(self)
    }
}

impl MaybeGiven for &String {
    fn given(&self) -> Option<&str> {
        Some(self)
    }
}

impl MaybeGiven for Option<&str> {
    fn given(&self) -> Option<&str> {
        *self
    }
}

impl Seen {
    pub async fn from(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = match serde_json::from_slice(&bytes) {
            _ if bytes.is_empty() => Value::Null,
            Ok(body) => body,
            Err(error) => panic!("{status}: a body that is not JSON ({error}): {}", String::from_utf8_lossy(&bytes)),
        };
        Self { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ASCII header"))
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the error envelope: status, code, a message, `details` an array, JSON type,
    /// and `WWW-Authenticate: Bearer` on a 401.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status.as_u16(), self.code()), (status, code), "body: {}", self.body);
        assert!(self.body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.body["error"]["details"].is_array());
        assert_eq!(self.header("content-type"), Some("application/json"));
        if status == 401 {
            assert_eq!(self.header("www-authenticate"), Some("Bearer"));
        }
    }

    pub fn has_cors(&self) -> bool {
        self.headers.contains_key("access-control-allow-origin")
    }
}

impl TestApp {
    /// Reloads the configuration it started with, changed by `tweak`, as SIGHUP does; returns
    /// the changed settings that need a restart.
    pub async fn reload(&self, tweak: impl FnOnce(&mut Config)) -> Vec<String> {
        let mut config = self.config.clone();
        tweak(&mut config);
        for _ in 0..100 {
            if let Some(reloader) = self.reloader.get() {
                return reloader.reload(&config).expect("the configuration reloads");
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("keygate did not start serving");
    }

    /// Graceful stop: in-flight requests finish, pending writes are flushed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.served).await.expect("serve task").expect("serve");
    }

    pub async fn admin_request(&self, method: Method, path: &str, body: Option<Value>) -> Seen {
        let mut request = self.client.request(method, format!("{}{path}", self.admin)).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Seen::from(request.send().await.expect("admin request")).await
    }

    pub async fn create_tenant(&self, body: Value) -> Value {
        let seen = self.admin_request(Method::POST, "/admin/v1/tenants", Some(body)).await;
        assert_eq!(seen.status, 201, "{}", seen.body);
        seen.body["data"].clone()
    }

    pub async fn patch_tenant(&self, id: &str, body: Value) -> Value {
        let seen = self.admin_request(Method::PATCH, &format!("/admin/v1/tenants/{id}"), Some(body)).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        seen.body["data"].clone()
    }

    /// Creates a key; returns (key object with `secret`, secret).
    pub async fn create_key(&self, tenant: &str, body: Value) -> (Value, String) {
        let seen = self.admin_request(Method::POST, &format!("/admin/v1/tenants/{tenant}/keys"), Some(body)).await;
        assert_eq!(seen.status, 201, "{}", seen.body);
        let secret = seen.body["data"]["secret"].as_str().expect("secret").to_owned();
        (seen.body["data"].clone(), secret)
    }

    pub async fn patch_key(&self, id: &str, body: Value) -> Value {
        let seen = self.admin_request(Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(body)).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        seen.body["data"].clone()
    }

    /// A key of an existing tenant, allowed at [`ORIGIN`], holding `scopes`, with `limit`
    /// requests a day; returns (key, secret).
    pub async fn limited_key(&self, tenant: &str, scopes: &[&str], limit: u64) -> (Value, String) {
        let body = json!({
            "name": "limited", "scopes": scopes, "allowedOrigins": [ORIGIN],
            "rateLimit": { "limit": limit, "windowSeconds": DAY },
        });
        self.create_key(tenant, body).await
    }

    /// A tenant with a browser key allowed at [`ORIGIN`] holding `scopes`; returns (key, secret).
    pub async fn browser_key(&self, tenant: &str, scopes: &[&str]) -> (Value, String) {
        self.create_tenant(json!({ "id": tenant, "name": tenant })).await;
        self.create_key(
            tenant,
            json!({
                "name": "browser", "scopes": scopes, "allowedOrigins": [ORIGIN],
                "rateLimit": { "limit": 1000, "windowSeconds": DAY },
            }),
        )
        .await
    }

    /// `POST /api/v1/sessions` with the given raw headers.
    pub async fn mint_with(&self, headers: &[(&str, &[u8])]) -> Seen {
        let mut request = self.client.post(format!("{}/api/v1/sessions", self.public));
        for (name, value) in headers {
            request = request.header(*name, reqwest::header::HeaderValue::from_bytes(value).expect("header value"));
        }
        Seen::from(request.send().await.expect("mint request")).await
    }

    /// `POST /api/v1/sessions` with `Bearer <secret>` and an optional `Origin`.
    pub async fn mint(&self, secret: &str, origin: Option<&str>) -> Seen {
        let auth = format!("Bearer {secret}");
        let mut headers: Vec<(&str, &[u8])> = vec![("authorization", auth.as_bytes())];
        if let Some(origin) = origin {
            headers.push(("origin", origin.as_bytes()));
        }
        self.mint_with(&headers).await
    }

    /// A request on the public listener, built a part at a time:
    /// `app.request("POST", "/api/v1/orders").key(&secret).origin(ORIGIN).send().await`.
    pub fn request(&self, method: &str, path: &str) -> Call {
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        Call { request: self.client.request(method, format!("{}{path}", self.public)) }
    }

    /// Mints a session for `secret` at `origin`, asserting success.
    pub async fn session(&self, secret: &str, origin: &str) -> String {
        let seen = self.mint(secret, Some(origin)).await;
        assert_eq!(seen.status, 201, "{}", seen.body);
        seen.body["data"]["sessionToken"].as_str().unwrap().to_owned()
    }

    /// A tenant with module `orders` and a key allowed at [`ORIGIN`] with `scopes`.
    pub async fn orders_key(&self, tenant: &str, scopes: &[&str]) -> (Value, String) {
        self.create_tenant(json!({ "id": tenant, "name": tenant, "modules": ["orders"] })).await;
        self.create_key(
            tenant,
            json!({
                "name": "web", "scopes": scopes, "allowedOrigins": [ORIGIN, "https://second.example"],
                "rateLimit": { "limit": 1000, "windowSeconds": DAY },
            }),
        )
        .await
    }

    /// A Prometheus sample of this process's metrics, read from the admin listener.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let response = self.client.get(format!("{}/metrics", self.admin)).bearer_auth(ADMIN_TOKEN).send().await;
        metric_value(&response.expect("metrics").text().await.expect("metrics text"), name_and_labels)
    }

    /// A CORS preflight of `method` on `path` from `origin`, asking for `Authorization`.
    pub async fn preflight(&self, path: &str, origin: &str, method: &str) -> Seen {
        let response = self
            .client
            .request(Method::OPTIONS, format!("{}{path}", self.public))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", "authorization")
            .send()
            .await
            .expect("preflight");
        Seen::from(response).await
    }

    /// The status of a CORS preflight of `POST /api/v1/sessions` from `origin`.
    pub async fn preflight_status(&self, origin: &str) -> u16 {
        self.preflight("/api/v1/sessions", origin, "POST").await.status.as_u16()
    }

    pub async fn get(&self, path: &str) -> Seen {
        Seen::from(self.client.get(format!("{}{path}", self.public)).send().await.expect("get")).await
    }
}

/// The value of the first Prometheus sample line starting with `name_and_labels` (0 if none).
pub fn metric_value(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name_and_labels))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// The JSON of a JWT segment, without verification (tests verify separately).
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("JWT segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn rfc3339(seconds: i64) -> String {
    keygate::time::format_rfc3339(seconds * 1000)
}
