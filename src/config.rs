//! Configuration (SPEC §10): a TOML file, then `KEYGATE_<SECTION>_<KEY>` environment
//! overrides, then validation. Every setting has a default, so no file is needed. An unknown
//! key or a bad value stops start-up with a message naming the key.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::paths::{SESSIONS_PATH, prefix_matches};
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
    /// Gateway routes; the first whose prefix and method match wins.
    pub routes: Vec<RouteConfig>,
}

/// One `[[routes]]` entry (SPEC §7, §10).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    pub methods: Vec<String>,
    pub upstream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Default: the method is not GET, HEAD or OPTIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<bool>,
}

impl RouteConfig {
    /// The upstream's scheme and authority: `http://` or `https://host[:port]`, without a path.
    pub fn upstream_parts(&self) -> Result<(http::uri::Scheme, http::uri::Authority), String> {
        let upstream: http::Uri = self.upstream.parse().map_err(|_| "upstream: not a URL".to_owned())?;
        match (upstream.scheme(), upstream.authority(), upstream.path_and_query()) {
            (Some(scheme), Some(authority), path)
                if matches!(scheme.as_str(), "http" | "https") && path.is_none_or(|p| p.as_str() == "/") =>
            {
                Ok((scheme.clone(), authority.clone()))
            }
            _ => Err("upstream: must be http:// or https://host[:port] without a path".to_owned()),
        }
    }

    /// The methods, exactly as spelled (methods are case-sensitive).
    pub fn parsed_methods(&self) -> Result<Vec<http::Method>, String> {
        if self.methods.is_empty() {
            return Err("methods: must list at least one method".to_owned());
        }
        const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
        self.methods
            .iter()
            .map(|raw| {
                // Methods are case-sensitive, so `get` would be an extension method no client
                // sends: every GET would get 405.
                let upper = raw.to_ascii_uppercase();
                if *raw != upper && STANDARD.contains(&upper.as_str()) {
                    return Err(format!("methods: {raw:?} is not {upper:?}; methods are case-sensitive"));
                }
                http::Method::from_bytes(raw.as_bytes()).map_err(|_| format!("methods: {raw:?} is not a method"))
            })
            .collect()
    }

    pub fn parsed_scope(&self) -> Result<Option<Scope>, String> {
        self.scope.as_deref().map(Scope::parse).transpose().map_err(|e| format!("scope: {e}"))
    }

    /// Every check of a route that needs nothing but the route itself.
    fn validate(&self) -> Result<(), String> {
        let prefix = &self.prefix;
        if !prefix.starts_with('/') {
            return Err("prefix: must be a path starting with /".to_owned());
        }
        // A prefix that covers the built-in path (`/`, `/api/v1`) is fine: the built-in path
        // still answers first. One at or under it could serve nothing but a shadow of it.
        if prefix_matches(SESSIONS_PATH, prefix) {
            return Err("prefix: /api/v1/sessions is built in and cannot be routed".to_owned());
        }
        if !crate::paths::is_normal(prefix) || prefix.contains(['?', '#', '%']) {
            return Err("prefix: must be a plain path without dot or empty segments, `;` or `%`".to_owned());
        }
        self.upstream_parts()?;
        self.parsed_methods()?;
        self.parsed_scope()?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// No token: no admin listener.
    pub admin_token: Option<String>,
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

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_token: None,
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
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: "sqlite://keygate.db".to_owned() }
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
    pub url: String,
    pub limit: u64,
    pub window_seconds: u64,
    pub on_backend_error: OnBackendError,
    /// Failed authentications (invalid, revoked or expired keys) per client address and
    /// `failed_auth_window_seconds`; over it, 429. 0 (the default): no limit.
    pub failed_auth_limit: u64,
    pub failed_auth_window_seconds: u64,
    /// For `rediss://`: PEM certificates of the authorities to trust instead of the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            url: "memory://".to_owned(),
            limit: 600,
            window_seconds: 60,
            on_backend_error: OnBackendError::Allow,
            failed_auth_limit: 0,
            failed_auth_window_seconds: 60,
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
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self { prefix: "kg".to_owned() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub connect_timeout_ms: u64,
    pub response_timeout_ms: u64,
    pub max_body_bytes: u64,
    pub trusted_proxies: Vec<String>,
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

/// A start-up error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
}

/// The scalars that `KEYGATE_<SECTION>_<KEY>` may override.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Text),
    ("server", "admin_listen", Kind::Text),
    ("server", "admin_token", Kind::Text),
    ("server", "header_read_timeout_ms", Kind::Integer),
    ("server", "max_connections", Kind::Integer),
    ("server", "shutdown_delay_ms", Kind::Integer),
    ("server", "shutdown_grace_ms", Kind::Integer),
    ("server", "max_header_bytes", Kind::Integer),
    ("server", "public_host", Kind::Text),
    ("server", "threads", Kind::Integer),
    ("server", "tls_cert_file", Kind::Text),
    ("server", "tls_key_file", Kind::Text),
    ("server", "admin_tls_cert_file", Kind::Text),
    ("server", "admin_tls_key_file", Kind::Text),
    ("store", "url", Kind::Text),
    ("rate_limit", "url", Kind::Text),
    ("rate_limit", "limit", Kind::Integer),
    ("rate_limit", "window_seconds", Kind::Integer),
    ("rate_limit", "on_backend_error", Kind::Text),
    ("rate_limit", "failed_auth_limit", Kind::Integer),
    ("rate_limit", "failed_auth_window_seconds", Kind::Integer),
    ("rate_limit", "ca_file", Kind::Text),
    ("sessions", "algorithm", Kind::Text),
    ("sessions", "ttl_seconds", Kind::Integer),
    ("sessions", "issuer", Kind::Text),
    ("keys", "prefix", Kind::Text),
    ("proxy", "connect_timeout_ms", Kind::Integer),
    ("proxy", "response_timeout_ms", Kind::Integer),
    ("proxy", "max_body_bytes", Kind::Integer),
    ("proxy", "ca_file", Kind::Text),
    ("proxy", "websocket_idle_timeout_ms", Kind::Integer),
    ("proxy", "websocket_max_lifetime_ms", Kind::Integer),
    ("proxy", "max_websockets", Kind::Integer),
    ("proxy", "max_websockets_per_key", Kind::Integer),
];

/// `KEYGATE_` variables that are not settings: read by the CLI itself.
pub const ENV_NON_SETTINGS: &[&str] = &["KEYGATE_CONFIG", "KEYGATE_LOG", "KEYGATE_ADMIN_URL", "KEYGATE_ADMIN_CA_FILE"];

pub fn env_name(section: &str, key: &str) -> String {
    format!("KEYGATE_{}_{}", section.to_ascii_uppercase(), key.to_ascii_uppercase())
}

/// What a printed secret becomes.
pub const REDACTED: &str = "<redacted>";

/// Query parameters of a URL that carry a secret (libpq's `password`, `sslpassword`).
const SECRET_PARAMETERS: &[&str] = &["password", "sslpassword"];

/// `url` with its secrets redacted: the password of its user info, and the `password` and
/// `sslpassword` query parameters (SPEC §17).
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let mut redacted = redact_user_info(head);
    if let Some(query) = query {
        let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET_PARAMETERS.iter().any(|secret| name.eq_ignore_ascii_case(secret)) => {
                    format!("{name}={REDACTED}")
                }
                _ => pair.to_owned(),
            })
            .collect();
        redacted.push('?');
        redacted.push_str(&pairs.join("&"));
        if let Some(fragment) = fragment {
            redacted.push('#');
            redacted.push_str(fragment);
        }
    }
    redacted
}

fn redact_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return url.to_owned() };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{REDACTED}{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl Config {
    /// This configuration with its secrets redacted: the admin token, and passwords in the
    /// store and rate-limit URLs. For printing (`keygate config check`).
    pub fn redacted(&self) -> Config {
        let mut config = self.clone();
        if config.server.admin_token.is_some() {
            config.server.admin_token = Some(REDACTED.to_owned());
        }
        config.store.url = redact_url(&config.store.url);
        config.rate_limit.url = redact_url(&config.rate_limit.url);
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
        let mut table = text.parse::<toml::Table>().map_err(|e| ConfigError(e.message().to_owned()))?;
        apply_env(&mut table, env)?;
        let config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError(format!("{}: {}", e.path(), e.inner().message())))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        let url = &self.store.url;
        let sqlite_path = url.strip_prefix("sqlite://").map(|rest| rest.split('?').next().unwrap_or_default());
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !postgres && sqlite_path.is_none_or(str::is_empty) {
            return fail("store.url", "expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE");
        }
        let limiter = &self.rate_limit.url;
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://"];
        if limiter != "memory://" && !schemes.iter().any(|s| limiter.starts_with(s)) {
            return fail("rate_limit.url", "expected memory://, redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH");
        }
        if !(1..=1_000_000_000).contains(&self.rate_limit.limit) {
            return fail("rate_limit.limit", "must be between 1 and 1000000000");
        }
        if !(1..=86_400).contains(&self.rate_limit.window_seconds) {
            return fail("rate_limit.window_seconds", "must be between 1 and 86400");
        }
        if self.rate_limit.failed_auth_limit > 1_000_000_000 {
            return fail("rate_limit.failed_auth_limit", "must be between 0 (no limit) and 1000000000");
        }
        if !(1..=86_400).contains(&self.rate_limit.failed_auth_window_seconds) {
            return fail("rate_limit.failed_auth_window_seconds", "must be between 1 and 86400");
        }
        if !(1..=86_400).contains(&self.sessions.ttl_seconds) {
            return fail("sessions.ttl_seconds", "must be between 1 and 86400");
        }
        if self.sessions.issuer.is_empty() {
            return fail("sessions.issuer", "must not be empty");
        }
        let prefix = &self.keys.prefix;
        if prefix.is_empty()
            || prefix.len() > 16
            || !prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return fail("keys.prefix", "must be 1 to 16 characters of a-z and 0-9");
        }
        if self.server.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return fail("server.admin_token", "must be at least 16 characters");
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return fail("server.max_connections", "must be between 1 and 1000000");
        }
        if !(1024..=1024 * 1024).contains(&self.server.max_header_bytes) {
            return fail("server.max_header_bytes", "must be between 1024 and 1048576");
        }
        if self.server.threads > 1024 {
            return fail("server.threads", "must be between 0 (one per core) and 1024");
        }
        if self.server.public_host.as_deref().is_some_and(|host| !is_host(host)) {
            return fail("server.public_host", "expected a host name with an optional port, such as api.example.com");
        }
        let proxy = &self.proxy;
        if [
            proxy.max_body_bytes,
            proxy.connect_timeout_ms,
            proxy.response_timeout_ms,
            proxy.websocket_idle_timeout_ms,
            proxy.websocket_max_lifetime_ms,
        ]
        .contains(&0)
        {
            return fail("proxy", "timeouts and max_body_bytes must be above 0");
        }
        if !(1..=1_000_000).contains(&proxy.max_websockets) {
            return fail("proxy.max_websockets", "must be between 1 and 1000000");
        }
        if !(1..=proxy.max_websockets).contains(&proxy.max_websockets_per_key) {
            return fail("proxy.max_websockets_per_key", "must be between 1 and proxy.max_websockets");
        }
        for (i, proxy) in self.proxy.trusted_proxies.iter().enumerate() {
            if parse_cidr(proxy).is_none() {
                return fail(
                    &format!("proxy.trusted_proxies[{i}]"),
                    "expected an IP address or CIDR such as 10.0.0.0/8",
                );
            }
        }
        let listeners = [
            ("server.tls", &self.server.tls_cert_file, &self.server.tls_key_file),
            ("server.admin_tls", &self.server.admin_tls_cert_file, &self.server.admin_tls_key_file),
        ];
        for (setting, cert, key) in listeners {
            match (cert, key) {
                (Some(cert), Some(key)) => {
                    crate::tls::ReloadingCertificate::load(setting, Path::new(cert), Path::new(key))
                        .map_err(ConfigError)?;
                }
                (None, None) => {}
                (Some(_), None) => {
                    return fail(&format!("{setting}_key_file"), &format!("must be set with {setting}_cert_file"));
                }
                (None, Some(_)) => {
                    return fail(&format!("{setting}_cert_file"), &format!("must be set with {setting}_key_file"));
                }
            }
        }
        if let Some(file) = &self.rate_limit.ca_file {
            if !self.rate_limit.url.starts_with("rediss://") {
                return fail("rate_limit.ca_file", "is for a rediss:// rate_limit.url");
            }
            crate::tls::read_certificates(std::path::Path::new(file))
                .map_err(|e| ConfigError(format!("rate_limit.ca_file: {e}")))?;
        }
        if let Some(file) = &self.proxy.ca_file {
            crate::tls::read_certificates(std::path::Path::new(file))
                .map_err(|e| ConfigError(format!("proxy.ca_file: {e}")))?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate().map_err(|e| ConfigError(format!("routes[{i}].{e}")))?;
        }
        Ok(())
    }

    /// `server.header_read_timeout_ms`, `None` when turned off.
    pub fn header_read_timeout(&self) -> Option<std::time::Duration> {
        let ms = self.server.header_read_timeout_ms;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    }

    /// The failed-authentication limit per client address, if any.
    pub fn failed_auth_rate(&self) -> Option<crate::model::RateLimit> {
        let rate = &self.rate_limit;
        (rate.failed_auth_limit > 0).then_some(crate::model::RateLimit {
            limit: rate.failed_auth_limit,
            window_seconds: rate.failed_auth_window_seconds,
        })
    }

    /// The trusted proxies' networks (validated at load).
    pub fn trusted_proxies(&self) -> crate::trusted::TrustedProxies {
        crate::trusted::TrustedProxies::new(
            self.proxy.trusted_proxies.iter().filter_map(|raw| parse_cidr(raw)).collect(),
        )
    }
}

/// A `Host` header value: a host and an optional port, nothing else.
fn is_host(raw: &str) -> bool {
    raw.parse::<http::uri::Authority>().is_ok_and(|authority| authority.as_str() == raw && !raw.contains('@'))
}

/// An IP network, or a single address as its /32 or /128.
fn parse_cidr(raw: &str) -> Option<ipnet::IpNet> {
    raw.parse::<ipnet::IpNet>().ok().or_else(|| raw.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, value) in env {
        if !name.starts_with("KEYGATE_") || ENV_NON_SETTINGS.contains(&name.as_str()) {
            continue;
        }
        let Some(&(section, key, kind)) = ENV_KEYS.iter().find(|(s, k, _)| env_name(s, k) == name) else {
            return Err(ConfigError(format!("{name}: unknown setting")));
        };
        let value = match kind {
            Kind::Text => toml::Value::String(value),
            Kind::Integer => toml::Value::Integer(
                value.trim().parse().map_err(|_| ConfigError(format!("{name}: expected a whole number")))?,
            ),
        };
        let section_table = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| ConfigError(format!("{section}: expected a table")))?;
        section_table.insert(key.to_owned(), value);
    }
    Ok(())
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
    fn defaults_need_no_file() {
        let config = Config::load(None, []).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.rate_limit.limit, 600);
        assert_eq!(config.sessions.algorithm, SessionAlgorithm::HS256);
        assert_eq!(config.store.url, "sqlite://keygate.db");
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

    #[test]
    fn printed_urls_keep_everything_but_the_password() {
        assert_eq!(
            redact_url("postgres://kg:s3cret@db:5432/kg?sslmode=require"),
            "postgres://kg:<redacted>@db:5432/kg?sslmode=require"
        );
        assert_eq!(redact_url("redis://:pw@127.0.0.1:6379"), "redis://:<redacted>@127.0.0.1:6379");
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
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
        for (section, key, _) in ENV_KEYS {
            let known = defaults.get(section).and_then(|s| s.as_table()).is_some_and(|s| s.contains_key(*key))
                // Settings that are absent by default.
                || matches!(
                    (*section, *key),
                    (
                        "server",
                        "admin_token"
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
