//! Configuration (SPEC §10): a TOML file, then `KEYGATE_<SECTION>_<KEY>` environment
//! overrides (`env.rs`), read into typed settings (`values.rs`: what is parsed once is parsed
//! here), then the values checked (`validate.rs`) and the files they name (`files.rs`). Every
//! setting has a default, so no file is needed. An unknown key or a bad value stops start-up
//! with a message naming the key. `redact.rs` keeps secrets out of what is printed.

mod built;
mod env;
// Without TLS, every setting naming a file is refused by `built` first.
#[cfg(feature = "tls")]
mod files;
mod redact;
mod validate;
mod values;

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use env::{ENV_NON_SETTINGS, env_name};
pub use redact::{REDACTED, redact_url};
pub use values::{KeyHeader, LimiterUrl, RouteMethod, SQLITE_MEMORY, StoreUrl, TrustedProxy, UpstreamUrl};

use crate::scope::Scope;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub rate_limit: RateLimitConfig,
    pub sessions: SessionsConfig,
    pub keys: KeysConfig,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub usage: UsageConfig,
    /// Gateway routes; the first whose prefix and method match wins.
    pub routes: Vec<RouteConfig>,
}

/// One `[[routes]]` entry (SPEC §7, §10), parsed as it is read; what needs more than one
/// field (the prefix against the built-in paths, at least one method) is checked by
/// `validate.rs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub methods: Vec<RouteMethod>,
    /// None: the route only decides (SPEC §14) — the gateway answers it 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// Default: the method is not GET, HEAD or OPTIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<bool>,
    /// The key's `meta` to the upstream as `X-Keygate-Meta` (SPEC §11); off by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_meta: bool,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// No token: no admin listener.
    pub admin_token: Option<String>,
    /// Decisions for another proxy or an application (SPEC §14); none: no such listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_listen: Option<SocketAddr>,
    /// When set, every decision request must carry it as `X-Keygate-Decision-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_token: Option<String>,
    /// Both set: the public listener speaks TLS (HTTP/2 by ALPN), with the certificate chain
    /// and private key in these PEM files, read again when they change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<String>,
    /// Both set: the admin listener speaks TLS, with these PEM files (read again when they
    /// change), so that the admin token can cross a network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_cert_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_key_file: Option<String>,
    /// A connection must send a complete request head within this time of being accepted, or
    /// of its last request ending, whatever the protocol; otherwise it is closed (slowloris and
    /// idle connections). 0 turns the deadline off, for deployments whose load balancer
    /// already enforces one.
    pub header_read_timeout_ms: u64,
    /// Open client connections per listener; over it, a new connection is closed at once.
    pub max_connections: u32,
    /// From SIGTERM, how long keygate goes on accepting and serving while `/readyz` answers
    /// 503, so that a load balancer takes it out of rotation before its listeners close. Set
    /// it above the balancer's time to notice (check interval × failures); 0: close at once.
    pub shutdown_delay_ms: u64,
    /// Once the listeners close, how long in-flight requests and upgraded connections get to
    /// finish before they are closed.
    pub shutdown_grace_ms: u64,
    /// The largest request head (request line and headers) keygate reads; over it: 431.
    pub max_header_bytes: usize,
    /// `X-Forwarded-Host` sent upstream; default: the request's `Host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_host: Option<String>,
    /// Threads serving the public listener, each with its own upstream connections; 0: one
    /// per core this process may use.
    pub threads: usize,
}

/// The settings as `config check` prints them: the tokens redacted.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.clone();
        for token in [&mut shown.admin_token, &mut shown.decision_token].into_iter().flatten() {
            *token = REDACTED.to_owned();
        }
        match serde_json::to_value(&shown) {
            Ok(serde_json::Value::Object(fields)) => f.debug_map().entries(fields.iter()).finish(),
            _ => f.write_str("ServerConfig"),
        }
    }
}

impl ServerConfig {
    /// Each listener's certificate settings: their common start, the certificate file, the key
    /// file.
    pub fn listener_certificates(&self) -> [(&'static str, Option<&str>, Option<&str>); 2] {
        [
            ("server.tls", self.tls_cert_file.as_deref(), self.tls_key_file.as_deref()),
            ("server.admin_tls", self.admin_tls_cert_file.as_deref(), self.admin_tls_key_file.as_deref()),
        ]
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_token: None,
            decision_listen: None,
            decision_token: None,
            tls_cert_file: None,
            tls_key_file: None,
            admin_tls_cert_file: None,
            admin_tls_key_file: None,
            header_read_timeout_ms: 10_000,
            max_connections: 10_000,
            shutdown_delay_ms: 0,
            shutdown_grace_ms: 30_000,
            max_header_bytes: 32 * 1024,
            public_host: None,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub url: StoreUrl,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: StoreUrl::Sqlite("sqlite://keygate.db".to_owned()) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    Allow,
    Local,
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub url: LimiterUrl,
    pub limit: u64,
    pub window_seconds: u64,
    pub on_backend_error: OnBackendError,
    /// A shared limiter that has not answered within this counts as failed, and
    /// `on_backend_error` decides. Bounds connecting too.
    pub timeout_ms: u64,
    /// Failed authentications (invalid, revoked or expired keys) per client address and
    /// `failed_auth_window_seconds`; over it, 429. 0 (the default): no limit.
    pub failed_auth_limit: u64,
    pub failed_auth_window_seconds: u64,
    /// Also `RateLimit-Policy` and `RateLimit` (SPEC §13), beside `X-RateLimit-*`.
    pub ietf_headers: bool,
    /// For `rediss://`: PEM certificates of the authorities to trust instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl RateLimitConfig {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            url: LimiterUrl::Memory,
            limit: 600,
            window_seconds: 60,
            on_backend_error: OnBackendError::Allow,
            timeout_ms: 250,
            failed_auth_limit: 0,
            failed_auth_window_seconds: 60,
            ietf_headers: false,
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionAlgorithm {
    HS256,
    EdDSA,
}

impl SessionAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    pub algorithm: SessionAlgorithm,
    pub ttl_seconds: u64,
    pub issuer: String,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { algorithm: SessionAlgorithm::HS256, ttl_seconds: 3600, issuer: "keygate".to_owned() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    pub prefix: String,
    /// The request headers a key may come in, in order (SPEC §11).
    pub headers: Vec<KeyHeader>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            prefix: "kg".to_owned(),
            headers: vec![KeyHeader::try_from("authorization".to_owned()).expect("a name")],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<TrustedProxy>,
    /// An upgraded (WebSocket) connection through which nothing passed for this long is closed.
    pub websocket_idle_timeout_ms: u64,
    /// An upgraded connection is closed this long after it opened, whatever passes through it.
    pub websocket_max_lifetime_ms: u64,
    /// Open WebSockets per instance, and per API key; over either, a handshake gets 429. They
    /// are counted apart from `server.max_connections`.
    pub max_websockets: u32,
    pub max_websockets_per_key: u32,
    /// PEM certificates of extra authorities trusted for `https://` upstreams, besides the
    /// system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 2000,
            response_timeout_ms: 30000,
            max_body_bytes: 10 * 1024 * 1024,
            trusted_proxies: Vec::new(),
            websocket_idle_timeout_ms: 300_000,
            websocket_max_lifetime_ms: 86_400_000,
            max_websockets: 1000,
            max_websockets_per_key: 100,
            ca_file: None,
        }
    }
}

/// `[admin]` (SPEC §12): the audit log's retention, and admin tokens besides
/// `server.admin_token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Audit entries older than this many days are pruned; 0 keeps every one.
    pub audit_retention_days: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<AdminTokenConfig>,
}

/// `[usage]` (SPEC §13): how often an instance writes what it counted, and how long hours are
/// kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    pub flush_seconds: u64,
    /// Hours older than this many days are pruned; 0 keeps every hour.
    pub retention_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { flush_seconds: 5, retention_days: 400 }
    }
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Everything.
    Admin,
    /// Every `GET`; a write answers 403 `ADMIN_READ_ONLY`.
    Read,
}

/// One `[[admin.tokens]]` entry: its writes are recorded in the audit log under `name`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    pub name: String,
    pub token: String,
    pub role: AdminRole,
}

/// Never the token itself.
impl std::fmt::Debug for AdminTokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokenConfig").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// A start-up error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// This configuration with its secrets redacted: the admin tokens, and passwords in the
    /// store and rate-limit URLs. For printing (`keygate config check`).
    pub fn redacted(&self) -> Config {
        let mut config = self.clone();
        for token in [&mut config.server.admin_token, &mut config.server.decision_token].into_iter().flatten() {
            *token = REDACTED.to_owned();
        }
        for token in &mut config.admin.tokens {
            token.token = REDACTED.to_owned();
        }
        config.store.url = config.store.url.redacted();
        config.rate_limit.url = config.rate_limit.url.redacted();
        config
    }

    /// Reads `file` (if any), applies the `KEYGATE_*` variables in `env`, and validates.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                Self::parse(&text, env).map_err(|ConfigError(e)| ConfigError(format!("{}: {e}", path.display())))
            }
            None => Self::parse("", env),
        }
    }

    /// [`Config::load`] from the text of a file.
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = text.parse::<toml::Table>().map_err(|e| ConfigError(syntax_error(text, &e)))?;
        env::apply_env(&mut table, env)?;
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{}: {}", e.path(), e.inner().message())))?;
        config.validate()?;
        config.check_built()?;
        #[cfg(feature = "tls")]
        config.check_files()?;
        Ok(config)
    }

    /// `server.header_read_timeout_ms`, `None` when turned off.
    pub fn header_read_timeout(&self) -> Option<std::time::Duration> {
        let ms = self.server.header_read_timeout_ms;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// The failed-authentication limit per client address, if any.
    /// Whether any admin token is set (`server.admin_token` or `[[admin.tokens]]`): the admin
    /// listener runs only then.
    pub fn has_admin_tokens(&self) -> bool {
        self.server.admin_token.is_some() || !self.admin.tokens.is_empty()
    }

    pub fn failed_auth_rate(&self) -> Option<crate::model::RateLimit> {
        let rate = &self.rate_limit;
        (rate.failed_auth_limit > 0).then_some(crate::model::RateLimit {
            limit: rate.failed_auth_limit,
            window_seconds: rate.failed_auth_window_seconds,
        })
    }

    /// The trusted proxies' networks.
    pub fn trusted_proxies(&self) -> crate::trusted::TrustedProxies {
        crate::trusted::TrustedProxies::new(self.proxy.trusted_proxies.iter().map(|proxy| proxy.network).collect())
    }
}

/// A TOML syntax error with where it is, as an editor counts: `line 2, column 10: …`.
fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return error.message().to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
    format!("line {line}, column {column}: {}", error.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.toml");
        std::fs::write(&path, toml_text).unwrap();
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load(Some(&path), env).map_err(|e| e.to_string())
    }

    #[test]
    fn a_syntax_error_says_its_line_and_column() {
        let error = load("[server]\nlisten = \"127.0.0.1:1\n", &[]).unwrap_err();
        assert!(error.contains("keygate.toml: line 2, column "), "{error}");
        let error = load("[server\n", &[]).unwrap_err();
        assert!(error.contains("line 1, column "), "{error}");
    }

    #[test]
    #[cfg(feature = "gateway")]
    fn a_route_an_earlier_one_takes_every_request_of_is_refused_naming_both() {
        let route = |prefix: &str, methods: &str| {
            format!("[[routes]]\nprefix = \"{prefix}\"\nmethods = {methods}\nupstream = \"http://127.0.0.1:9\"\n")
        };
        let copy = [route("/a", r#"["GET"]"#), route("/a", r#"["GET"]"#)].concat();
        let error = load(&copy, &[]).unwrap_err();
        assert!(error.contains("routes[1]: can never match: routes[0]"), "{error}");
        let under =
            [route("/api", r#"["GET", "POST"]"#), route("/b", r#"["GET"]"#), route("/api/orders", r#"["HEAD"]"#)];
        let error = load(&under.concat(), &[]).unwrap_err();
        assert!(error.contains("routes[2]: can never match: routes[0]") && error.contains("/api/orders"), "{error}");
        let split =
            [route("/api", r#"["GET"]"#), route("/api/o", r#"["POST"]"#), route("/api/o/x", r#"["GET", "POST"]"#)];
        let error = load(&split.concat(), &[]).unwrap_err();
        assert!(error.contains("routes[2]: can never match: routes[0] and routes[1]"), "{error}");
        // Reachable: a method of its own, a broader route after a narrower one, a sibling prefix.
        for fine in [
            [route("/a", r#"["GET"]"#), route("/a", r#"["POST"]"#)],
            [route("/a/b", r#"["GET"]"#), route("/a", r#"["GET"]"#)],
            [route("/a", r#"["GET"]"#), route("/ab", r#"["GET"]"#)],
            [route("/a", r#"["HEAD"]"#), route("/a", r#"["GET"]"#)],
        ] {
            load(&fine.concat(), &[]).unwrap_or_else(|error| panic!("{fine:?}: {error}"));
        }
    }

    #[test]
    fn defaults_need_no_file() {
        let config = Config::load(None, []).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.rate_limit.limit, 600);
        assert_eq!(config.sessions.algorithm, SessionAlgorithm::HS256);
        assert_eq!(config.store.url.as_str(), "sqlite://keygate.db");
    }

    #[test]
    #[cfg(feature = "gateway")]
    fn debug_output_shows_neither_token() {
        let text = "[server]\nadmin_token = \"admin-0123456789abcdef\"\ndecision_listen = \"127.0.0.1:8082\"\n\
                    decision_token = \"decide-0123456789abcdef\"\n";
        let config = load(text, &[]).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("0123456789abcdef") && shown.contains("decision_listen"), "{shown}");
        let printed = toml::to_string(&config.redacted()).unwrap();
        assert!(!printed.contains("0123456789abcdef") && printed.contains("127.0.0.1:8082"), "{printed}");
        let error = load("[server]\ndecision_token = \"decide-0123456789abcdef\"\n", &[]).unwrap_err();
        assert!(error.contains("server.decision_token: is set without server.decision_listen"), "{error}");
    }

    #[test]
    fn env_overrides_the_file() {
        let config = load(
            "[rate_limit]\nlimit = 5\n[sessions]\nalgorithm = \"EdDSA\"\n",
            &[("KEYGATE_RATE_LIMIT_LIMIT", "7"), ("KEYGATE_SERVER_ADMIN_TOKEN", "0123456789abcdef"), ("PATH", "/bin")],
        )
        .unwrap();
        assert_eq!(config.rate_limit.limit, 7);
        assert_eq!(config.sessions.algorithm, SessionAlgorithm::EdDSA);
        assert_eq!(config.server.admin_token.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    #[cfg(all(feature = "gateway", feature = "redis", feature = "postgres"))]
    fn unknown_keys_and_bad_values_name_the_key() {
        assert!(load("[server]\nlisten_addr = \"x\"\n", &[]).unwrap_err().contains("listen_addr"));
        assert!(load("[serverx]\n", &[]).unwrap_err().contains("serverx"));
        assert!(load("[server]\nlisten = \"nope\"\n", &[]).unwrap_err().contains("server.listen"));
        assert!(load("[rate_limit]\nlimit = \"many\"\n", &[]).unwrap_err().contains("rate_limit.limit"));
        assert!(
            load("[rate_limit]\non_backend_error = \"maybe\"\n", &[])
                .unwrap_err()
                .contains("rate_limit.on_backend_error")
        );
        assert!(load("", &[("KEYGATE_RATE_LIMIT_LIMIT", "lots")]).unwrap_err().contains("KEYGATE_RATE_LIMIT_LIMIT"));
        assert!(load("", &[("KEYGATE_SERVER_LISTN", "x")]).unwrap_err().contains("KEYGATE_SERVER_LISTN"));
        assert!(load("[sessions]\nttl_seconds = 0\n", &[]).unwrap_err().contains("sessions.ttl_seconds"));
        assert!(load("[rate_limit]\ntimeout_ms = 0\n", &[]).unwrap_err().contains("rate_limit.timeout_ms"));
        assert_eq!(
            load("", &[("KEYGATE_RATE_LIMIT_TIMEOUT_MS", "900")]).unwrap().rate_limit.timeout(),
            std::time::Duration::from_millis(900)
        );
        assert!(load("[store]\nurl = \"mysql://x\"\n", &[]).unwrap_err().contains("store.url"));
        assert!(load("[rate_limit]\nurl = \"memcached://x\"\n", &[]).unwrap_err().contains("rate_limit.url"));
        assert!(load("", &[("KEYGATE_RATE_LIMIT_URL", "redis://127.0.0.1:6379")]).is_ok());
        assert!(load("[store]\nurl = \"sqlite://\"\n", &[]).unwrap_err().contains("store.url"));
        assert!(load("[store]\nurl = \"postgres://kg@localhost/kg\"\n", &[]).is_ok());
        assert!(load("not toml at all [", &[]).is_err());
        assert!(
            load("[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", &[]).unwrap_err().contains("trusted_proxies[0]")
        );
        let route = |prefix: &str, extra: &str| {
            format!(
                "[[routes]]\nprefix = \"{prefix}\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:3000\"\n{extra}"
            )
        };
        assert!(load(&route("/api/v1/orders", ""), &[]).is_ok());
        for anywhere in ["/v2", "/graphql", "/api/v1", "/", "/admin/v1"] {
            assert!(load(&route(anywhere, ""), &[]).is_ok(), "{anywhere}");
        }
        assert!(load(&route("v2", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load(&route("/api/v1/sessions/x", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load(&route("/api/v1/sessions", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load(&route("/api/v1/../x", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load(&route("/api/v1/x;y", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load(&route("/api/v1/%78", ""), &[]).unwrap_err().contains("routes[0].prefix"));
        assert!(load("[server]\nmax_connections = 0\n", &[]).unwrap_err().contains("server.max_connections"));
        assert!(load("[server]\nthreads = 5000\n", &[]).unwrap_err().contains("server.threads"));
        assert!(load("[server]\nmax_header_bytes = 100\n", &[]).unwrap_err().contains("server.max_header_bytes"));
        assert!(load("[server]\npublic_host = \"api.example.com:8443\"\n", &[]).is_ok());
        for bad in ["", "https://api.example.com", "api.example.com/x", "user@api.example.com", "a b"] {
            let text = format!("[server]\npublic_host = {bad:?}\n");
            assert!(load(&text, &[]).unwrap_err().contains("server.public_host"), "{bad}");
        }
        assert!(load(&route("/api/v1/orders", "scope = \"bad scope\""), &[]).unwrap_err().contains("routes[0].scope"));
        assert!(load(&route("/api/v1/orders", "colour = 1"), &[]).unwrap_err().contains("colour"));
        let methods = |list: &str| {
            format!("[[routes]]\nprefix = \"/api/v1/o\"\nmethods = {list}\nupstream = \"http://127.0.0.1:3000\"\n")
        };
        let lower = load(&methods("[\"GET\", \"post\"]"), &[]).unwrap_err();
        assert!(lower.contains("routes[0].methods"), "{lower}");
        assert!(lower.contains("\"POST\""), "the message names the method meant: {lower}");
        assert!(load(&methods("[\"PURGE\", \"GET\"]"), &[]).is_ok(), "extension methods stay allowed");
    }

    /// The layer alone (`default-features = false`): what needs a part it lacks is refused.
    #[test]
    #[cfg(not(any(feature = "gateway", feature = "redis", feature = "postgres", feature = "tls")))]
    fn a_setting_this_build_lacks_is_refused_naming_its_feature() {
        let refused = [
            (
                "[store]\nurl = \"postgres://kg@localhost/kg\"\n",
                "store.url: needs keygate built with its `postgres` feature",
            ),
            (
                "[rate_limit]\nurl = \"redis://127.0.0.1:6379\"\n",
                "rate_limit.url: needs keygate built with its `redis` feature",
            ),
            (
                "[[routes]]\nprefix = \"/v2\"\nmethods = [\"GET\"]\nupstream = \"http://127.0.0.1:3000\"\n",
                "routes: needs keygate built with its `gateway` feature",
            ),
            (
                "[server]\ndecision_listen = \"127.0.0.1:8082\"\n",
                "server.decision_listen: needs keygate built with its `gateway`",
            ),
            (
                "[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n",
                "server.tls_cert_file: needs keygate built",
            ),
        ];
        for (text, said) in refused {
            let error = load(text, &[]).unwrap_err();
            assert!(error.contains(said) && error.contains("(this build has: none)"), "{text}: {error}");
        }
        assert!(load("[store]\nurl = \"sqlite::memory:\"\n[rate_limit]\nlimit = 5\n", &[]).is_ok());
    }

    #[test]
    fn printed_urls_keep_everything_but_the_password() {
        assert_eq!(
            redact_url("postgres://kg:s3cret@db:5432/kg?sslmode=require"),
            "postgres://kg:<redacted>@db:5432/kg?sslmode=require"
        );
        assert_eq!(redact_url("redis://:pw@127.0.0.1:6379"), "redis://:<redacted>@127.0.0.1:6379");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url("redis+cluster://:pw@h1:7000,h2:7000"), "redis+cluster://:<redacted>@h1:7000,h2:7000");
        assert_eq!(redact_url("sqlite:///var/lib/kg@x/keygate.db"), "sqlite:///var/lib/kg@x/keygate.db");
        assert_eq!(redact_url("postgres://kg@db/kg"), "postgres://kg@db/kg");
        // libpq takes passwords as query parameters too (SPEC §17).
        assert_eq!(
            redact_url("postgres://db/kg?user=kg&password=s3cret&sslmode=verify-full&SSLPassword=k3y#x"),
            "postgres://db/kg?user=kg&password=<redacted>&sslmode=verify-full&SSLPassword=<redacted>#x"
        );
        assert_eq!(
            redact_url("postgres://kg:pw@db/kg?password=s3cret"),
            "postgres://kg:<redacted>@db/kg?password=<redacted>"
        );
    }

    #[test]
    fn every_env_key_names_a_real_setting() {
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        for (section, key, _) in env::ENV_KEYS {
            let known = defaults.get(section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(*key))
                // Settings that are absent by default.
                || matches!(
                    (*section, *key),
                    (
                        "server",
                        "admin_token"
                            | "decision_listen"
                            | "decision_token"
                            | "public_host"
                            | "tls_cert_file"
                            | "tls_key_file"
                            | "admin_tls_cert_file"
                            | "admin_tls_key_file"
                    ) | ("proxy" | "rate_limit", "ca_file")
                );
            assert!(known, "{section}.{key}");
        }
    }
}
