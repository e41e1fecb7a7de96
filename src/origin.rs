//! Browser origins: the `Origin` a request carries and the allowlist entries it is matched
//! against (SPEC §4). Both are parsed once into a normalised form — lower-case scheme and
//! host, default port dropped — so matching is a plain comparison.

use std::borrow::Cow;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A normalised serialised origin, e.g. `https://app.example.com:8443`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    serialized: String,
    scheme_len: usize,
    host_end: usize,
}

/// Why an origin or an allowlist entry was refused; the message is shown to admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginError(pub &'static str);

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

struct Parts<'a> {
    scheme: &'static str,
    /// Lower-case: borrowed from the input when it already is, as browsers send it.
    host: Cow<'a, str>,
    port: Option<u16>,
    wildcard: bool,
}

fn parse_parts(raw: &str, allow_wildcard: bool) -> Result<Parts<'_>, OriginError> {
    if raw.eq_ignore_ascii_case("null") {
        return Err(OriginError("the null origin is never allowed"));
    }
    let (scheme, rest) = raw.split_once("://").ok_or(OriginError("must look like https://host[:port]"))?;
    let scheme = if scheme.eq_ignore_ascii_case("https") {
        "https"
    } else if scheme.eq_ignore_ascii_case("http") {
        "http"
    } else {
        return Err(OriginError("scheme must be http or https"));
    };
    if rest.contains(['/', '?', '#']) {
        return Err(OriginError("an origin has no path, query or fragment"));
    }
    if rest.contains('@') {
        return Err(OriginError("an origin has no user info"));
    }
    let (host, port) = split_host_port(rest)?;
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(base) if allow_wildcard => (true, base),
        _ => (false, host),
    };
    if name.contains('*') {
        return Err(OriginError("a wildcard is only allowed as the first label, as in https://*.example.com"));
    }
    if !is_valid_host(name) {
        return Err(OriginError("host is not a valid domain name or IP address"));
    }
    if wildcard && !is_dns_name(name) {
        return Err(OriginError("a wildcard needs a domain name under it"));
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = port.filter(|&p| p != default_port);
    let host = match name.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(name.to_ascii_lowercase()),
        false => Cow::Borrowed(name),
    };
    Ok(Parts { scheme, host, port, wildcard })
}

fn split_host_port(rest: &str) -> Result<(&str, Option<u16>), OriginError> {
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']').ok_or(OriginError("unterminated IPv6 address"))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(OriginError("unexpected text after the IPv6 address")),
        };
        (&rest[..=end], port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(OriginError("port must be between 1 and 65535")),
            Ok(n) => Some(n),
        },
        Some(_) => return Err(OriginError("port must be between 1 and 65535")),
    };
    Ok((host, port))
}

fn is_valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    host.parse::<Ipv4Addr>().is_ok() || is_dns_name(host)
}

/// A host name of LDH labels; a trailing dot is refused (`example.com.` is another origin).
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.parse::<Ipv4Addr>().is_err()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // The last label of a domain name is never all digits (rules out `1.2.3.999`).
        && !host.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// `scheme://host[:port]`, in one allocation of its size.
fn serialize(scheme: &str, host: &str, port: Option<u16>) -> String {
    let mut digits = itoa::Buffer::new();
    let port = port.map(|port| digits.format(port));
    let mut text = String::with_capacity(scheme.len() + 3 + host.len() + port.map_or(0, |p| 1 + p.len()));
    text.push_str(scheme);
    text.push_str("://");
    text.push_str(host);
    if let Some(port) = port {
        text.push(':');
        text.push_str(port);
    }
    text
}

impl Origin {
    /// Parses a request's `Origin` header: exactly a serialised origin, no path (not even `/`).
    pub fn parse(raw: &str) -> Result<Self, OriginError> {
        let parts = parse_parts(raw, false)?;
        let serialized = serialize(parts.scheme, &parts.host, parts.port);
        Ok(Self { scheme_len: parts.scheme.len(), host_end: parts.scheme.len() + 3 + parts.host.len(), serialized })
    }

    pub fn as_str(&self) -> &str {
        &self.serialized
    }

    pub(crate) fn scheme(&self) -> &str {
        &self.serialized[..self.scheme_len]
    }

    pub(crate) fn host(&self) -> &str {
        &self.serialized[self.scheme_len + 3..self.host_end]
    }

    /// `:port`, or empty for the scheme's default port.
    pub(crate) fn port_part(&self) -> &str {
        &self.serialized[self.host_end..]
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialized)
    }
}

/// An allowlist entry: an exact origin, or `scheme://*.domain[:port]` for one or more labels
/// under `domain` (never `domain` itself).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OriginPattern {
    Exact(Origin),
    Wildcard { scheme: &'static str, base: String, port: Option<u16> },
}

impl OriginPattern {
    /// Validates and normalises an entry as it is saved. A lone trailing `/` is dropped.
    pub fn parse(raw: &str) -> Result<Self, OriginError> {
        if raw.trim() == "*" {
            return Err(OriginError("`*` is not allowed: list each origin, or use https://*.example.com"));
        }
        let trimmed = match raw.strip_suffix('/') {
            Some(rest) if rest.contains("://") && !rest.ends_with('/') && !rest.ends_with(":/") => rest,
            _ => raw,
        };
        let parts = parse_parts(trimmed, true)?;
        if !parts.wildcard {
            return Origin::parse(trimmed).map(Self::Exact);
        }
        if is_icann_public_suffix(&parts.host) {
            return Err(OriginError(
                "a wildcard directly under a public suffix (like *.com or *.co.uk) is not allowed",
            ));
        }
        Ok(Self::Wildcard { scheme: parts.scheme, base: parts.host.into_owned(), port: parts.port })
    }

    pub fn matches(&self, origin: &Origin) -> bool {
        match self {
            Self::Exact(exact) => exact == origin,
            Self::Wildcard { scheme, base, port } => {
                let port_part = port.map(|p| format!(":{p}")).unwrap_or_default();
                origin.scheme() == *scheme
                    && origin.port_part() == port_part
                    && origin
                        .host()
                        .strip_suffix(base.as_str())
                        .is_some_and(|label| label.len() > 1 && label.ends_with('.'))
            }
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(origin) => origin.fmt(f),
            Self::Wildcard { scheme, base, port } => f.write_str(&serialize(scheme, &format!("*.{base}"), *port)),
        }
    }
}

/// True when `domain` is itself a suffix of the Public Suffix List's ICANN section.
fn is_icann_public_suffix(domain: &str) -> bool {
    psl::suffix(domain.as_bytes())
        .is_some_and(|s| s.as_bytes() == domain.as_bytes() && s.typ() == Some(psl::Type::Icann))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(raw: &str) -> Option<String> {
        Origin::parse(raw).ok().map(|o| o.to_string())
    }

    #[test]
    fn request_origins_are_normalised_or_refused() {
        let table: &[(&str, Option<&str>)] = &[
            ("https://app.example.com", Some("https://app.example.com")),
            ("HTTPS://App.Example.COM", Some("https://app.example.com")),
            ("https://app.example.com:443", Some("https://app.example.com")),
            ("http://app.example.com:80", Some("http://app.example.com")),
            ("http://app.example.com:443", Some("http://app.example.com:443")),
            ("https://app.example.com:8443", Some("https://app.example.com:8443")),
            ("http://localhost:3000", Some("http://localhost:3000")),
            ("http://127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("https://app.example.com/", None),
            ("https://app.example.com/path", None),
            ("https://app.example.com?q", None),
            ("https://user@app.example.com", None),
            ("https://user:pw@app.example.com", None),
            ("null", None),
            ("NULL", None),
            ("ftp://app.example.com", None),
            ("app.example.com", None),
            ("https://", None),
            ("https://app.example.com.", None),
            ("https://app..example.com", None),
            ("https://-app.example.com", None),
            ("https://app.example.com:0", None),
            ("https://app.example.com:65536", None),
            ("https://app.example.com:", None),
            ("https://app.example.com:+80", None),
            ("https://*.example.com", None),
            ("https://exämple.com", None),
            ("https://1.2.3.999", None),
            ("http://[::1", None),
        ];
        for (raw, want) in table {
            assert_eq!(origin(raw).as_deref(), *want, "Origin {raw:?}");
        }
    }

    fn allowed(entry: &str, request: &str) -> bool {
        let pattern = OriginPattern::parse(entry).expect(entry);
        Origin::parse(request).is_ok_and(|o| pattern.matches(&o))
    }

    #[test]
    fn allowlist_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("https://app.example.com", "https://app.example.com", true),
            ("https://app.example.com", "HTTPS://APP.EXAMPLE.COM:443", true),
            ("https://APP.example.com:443/", "https://app.example.com", true),
            ("https://app.example.com", "http://app.example.com", false),
            ("https://app.example.com", "https://app.example.com:8443", false),
            ("https://app.example.com", "https://example.com", false),
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://A.Example.com:443", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://evil-example.com", false),
            ("https://*.example.com", "https://a.evil-example.com", false),
            ("https://*.example.com", "https://example.com.evil.net", false),
            ("https://*.example.com", "https://a.example.com.evil.net", false),
            ("https://*.example.com", "http://a.example.com", false),
            ("https://*.example.com", "https://a.example.com:8443", false),
            ("https://*.example.com:8443", "https://a.example.com:8443", true),
            ("https://*.example.com", "https://.example.com", false),
            ("http://localhost:3000", "http://localhost:3000", true),
            ("http://localhost:3000", "http://localhost:3001", false),
        ];
        for (entry, request, want) in table {
            assert_eq!(allowed(entry, request), *want, "{entry} vs {request}");
        }
    }

    #[test]
    fn allowlist_entries_are_validated_and_normalised() {
        let ok: &[(&str, &str)] = &[
            ("https://app.example.com/", "https://app.example.com"),
            ("HTTPS://*.Example.com:443", "https://*.example.com"),
            ("https://*.github.io", "https://*.github.io"),
            ("http://localhost:3000", "http://localhost:3000"),
        ];
        for (raw, want) in ok {
            assert_eq!(OriginPattern::parse(raw).expect(raw).to_string(), *want);
        }
        let bad = [
            "*",
            "null",
            "https://app.example.com/path",
            "https://app.example.com//",
            "https://app.example.com?x=1",
            "https://u@app.example.com",
            "ftp://example.com",
            "https://*.com",
            "https://*.co.uk",
            "https://*.uk",
            "https://a.*.example.com",
            "https://*example.com",
            "https://*.*.example.com",
            "https://*.127.0.0.1",
            "https://example.com.",
            "example.com",
            "",
        ];
        for raw in bad {
            assert!(OriginPattern::parse(raw).is_err(), "{raw:?} should be refused");
        }
    }
}
