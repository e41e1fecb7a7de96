//! Settings parsed once, as they are read (`serde(try_from)`): what they mean is settled at load,
//! and the code that uses them matches on a type instead of looking at a string again. Each is
//! written back exactly as it was given, so `keygate config check` prints what the file says.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::redact::redact_url;

/// `store.url`: which engine, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreUrl {
    /// `sqlite://PATH[?…]`, or `sqlite::memory:` (a store that lives as long as the process:
    /// for tests and trials)
    Sqlite(String),
    /// `postgres://…` or `postgresql://…`
    Postgres(String),
}

/// `store.url` for a SQLite store in memory, gone when the process ends.
pub const SQLITE_MEMORY: &str = "sqlite::memory:";

impl StoreUrl {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Sqlite(url) | Self::Postgres(url) => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The same URL with its secrets redacted, for printing.
    pub fn redacted(&self) -> Self {
        match self {
            Self::Sqlite(url) => Self::Sqlite(redact_url(url)),
            Self::Postgres(url) => Self::Postgres(redact_url(url)),
        }
    }
}

impl TryFrom<String> for StoreUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url));
        }
        if url == SQLITE_MEMORY {
            return Ok(Self::Sqlite(url));
        }
        let path = url.strip_prefix("sqlite://").map(|rest| rest.split('?').next().unwrap_or_default());
        match path {
            Some(path) if !path.is_empty() => Ok(Self::Sqlite(url)),
            _ => Err("expected sqlite://PATH, sqlite::memory: or postgres://USER:PASSWORD@HOST/DATABASE".to_owned()),
        }
    }
}

/// `rate_limit.url`: in process, or a Redis server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum LimiterUrl {
    /// `memory://`
    Memory,
    /// `redis://`, `rediss://`, `unix://`, `redis+unix://`, or a Redis Cluster's nodes:
    /// `redis+cluster://host1:7000,host2:7000` (`rediss+cluster://` over TLS)
    Redis(String),
}

impl LimiterUrl {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Memory => "memory://",
            Self::Redis(url) => url,
        }
    }

    /// Whether it is Redis over TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Redis(url) if url.starts_with("rediss://") || url.starts_with("rediss+cluster://"))
    }

    /// The same URL with its secrets redacted, for printing.
    pub fn redacted(&self) -> Self {
        match self {
            Self::Memory => Self::Memory,
            Self::Redis(url) => Self::Redis(redact_url(url)),
        }
    }
}

impl TryFrom<String> for LimiterUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        if url == "memory://" {
            return Ok(Self::Memory);
        }
        let schemes = ["redis://", "rediss://", "unix://", "redis+unix://", "redis+cluster://", "rediss+cluster://"];
        if schemes.iter().any(|scheme| url.starts_with(scheme)) {
            return Ok(Self::Redis(url));
        }
        Err("expected memory://, redis://HOST:PORT, rediss://HOST:PORT, unix:///PATH or \
             redis+cluster://HOST:PORT,HOST:PORT"
            .to_owned())
    }
}

/// One of `proxy.trusted_proxies`: an IP network, or a single address as its /32 or /128.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrustedProxy {
    /// As written, for printing.
    raw: String,
    pub network: ipnet::IpNet,
}

impl TrustedProxy {
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl TryFrom<String> for TrustedProxy {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let network = raw.parse::<ipnet::IpNet>().ok().or_else(|| raw.parse::<std::net::IpAddr>().ok().map(Into::into));
        match network {
            Some(network) => Ok(Self { raw, network }),
            None => Err("expected an IP address or CIDR such as 10.0.0.0/8".to_owned()),
        }
    }
}

/// One of a route's `methods`, exactly as spelled: methods are case-sensitive, so `get` would be
/// an extension method no client sends (every GET would get 405), and is refused for `GET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RouteMethod(pub http::Method);

impl RouteMethod {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl TryFrom<String> for RouteMethod {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"];
        let upper = raw.to_ascii_uppercase();
        if raw != upper && STANDARD.contains(&upper.as_str()) {
            return Err(format!("{raw:?} is not {upper:?}; methods are case-sensitive"));
        }
        http::Method::from_bytes(raw.as_bytes()).map(Self).map_err(|_| format!("{raw:?} is not a method"))
    }
}

/// A route's `upstream`: `http://` or `https://host[:port]`, without a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UpstreamUrl {
    /// As written, for printing.
    raw: String,
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
}

impl UpstreamUrl {
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let upstream: http::Uri = raw.parse().map_err(|_| "not a URL".to_owned())?;
        match (upstream.scheme(), upstream.authority(), upstream.path_and_query()) {
            (Some(scheme), Some(authority), path)
                if matches!(scheme.as_str(), "http" | "https") && path.is_none_or(|p| p.as_str() == "/") =>
            {
                let (scheme, authority) = (scheme.clone(), authority.clone());
                Ok(Self { raw, scheme, authority })
            }
            _ => Err("must be http:// or https://host[:port] without a path".to_owned()),
        }
    }
}

/// One of `keys.headers`: a request header a key may come in (SPEC §11). `authorization` means
/// `Authorization: Bearer <key>`; any other carries the bare key. Lower case, and none of the
/// headers keygate reads or sets for something else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyHeader(http::HeaderName);

impl KeyHeader {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn name(&self) -> &http::HeaderName {
        &self.0
    }

    pub fn is_authorization(&self) -> bool {
        self.0 == http::header::AUTHORIZATION
    }
}

impl TryFrom<String> for KeyHeader {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        const TAKEN: [&str; 12] = [
            "origin",
            "x-session-token",
            "cookie",
            "host",
            "content-type",
            "content-length",
            "connection",
            "upgrade",
            "transfer-encoding",
            "te",
            "sec-websocket-protocol",
            "proxy-authorization",
        ];
        let name = http::HeaderName::from_bytes(raw.as_bytes()).map_err(|_| format!("{raw:?} is not a header name"))?;
        if name.as_str() != raw {
            return Err(format!("{raw:?}: write header names in lower case"));
        }
        if TAKEN.contains(&name.as_str()) || raw.starts_with("x-keygate-") || raw.starts_with("x-forwarded-") {
            return Err(format!("{raw:?} is a header keygate reads or sets for something else"));
        }
        Ok(Self(name))
    }
}

/// Read from text by `TryFrom<String>`, written back as [`as_str`](StoreUrl::as_str) gives it.
macro_rules! text_setting {
    ($($type:ty),*) => {$(
        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(text: &str) -> Result<Self, String> {
                Self::try_from(text.to_owned())
            }
        }
        impl From<$type> for String {
            fn from(value: $type) -> String {
                value.as_str().to_owned()
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

text_setting!(StoreUrl, LimiterUrl, TrustedProxy, RouteMethod, UpstreamUrl, KeyHeader);

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `gateway::routes`, where a route's upstream and methods were parsed before
    /// they were parsed at load: the same cases.
    #[test]
    fn upstreams_are_http_or_https_authorities() {
        assert!("ftp://example.com".parse::<UpstreamUrl>().is_err());
        assert_eq!("https://example.com:8443".parse::<UpstreamUrl>().unwrap().scheme, http::uri::Scheme::HTTPS);
        assert!("http://example.com/base".parse::<UpstreamUrl>().is_err());
        assert!("http://example.com:8080/".parse::<UpstreamUrl>().is_ok());
        assert!("BAD METHOD".parse::<RouteMethod>().is_err());
    }
}
