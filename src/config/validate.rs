//! The checks of a configuration's values, each failure naming its setting. They read no file:
//! the files a configuration names are checked by `files.rs`.

use http::Method;

use super::{Config, ConfigError, RouteConfig};
use crate::paths::{SESSIONS_PATH, prefix_matches};

impl Config {
    /// Every check of the values themselves; what they name on disk is [`Config::check_files`]'s.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if !(1..=1_000_000_000).contains(&self.rate_limit.limit) {
            return fail("rate_limit.limit", "must be between 1 and 1000000000");
        }
        if !(1..=86_400).contains(&self.rate_limit.window_seconds) {
            return fail("rate_limit.window_seconds", "must be between 1 and 86400");
        }
        if !(1..=10_000).contains(&self.rate_limit.timeout_ms) {
            return fail("rate_limit.timeout_ms", "must be between 1 and 10000");
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
        let headers = &self.keys.headers;
        if headers.is_empty() || headers.len() > 8 {
            return fail("keys.headers", "must list 1 to 8 header names");
        }
        if let Some(twice) = headers.iter().enumerate().find(|(i, h)| headers[..*i].contains(h)) {
            return fail(&format!("keys.headers[{}]", twice.0), "is listed twice");
        }
        if self.server.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return fail("server.admin_token", "must be at least 16 characters");
        }
        if self.server.decision_token.as_deref().is_some_and(|t| t.len() < 16) {
            return fail("server.decision_token", "must be at least 16 characters");
        }
        if self.server.decision_token.is_some() && self.server.decision_listen.is_none() {
            return fail("server.decision_token", "is set without server.decision_listen");
        }
        self.validate_admin_tokens()?;
        if self.admin.audit_retention_days > 36_500 {
            return fail("admin.audit_retention_days", "must be between 0 (keep every entry) and 36500");
        }
        if !(1..=3600).contains(&self.usage.flush_seconds) {
            return fail("usage.flush_seconds", "must be between 1 and 3600");
        }
        // A month's quota is recovered from the month's hours, so they must be kept.
        if self.usage.retention_days != 0 && !(32..=36_500).contains(&self.usage.retention_days) {
            return fail("usage.retention_days", "must be 0 (keep every hour) or between 32 and 36500");
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
        for (setting, cert, key) in self.server.listener_certificates() {
            match (cert, key) {
                (Some(_), None) => {
                    return fail(&format!("{setting}_key_file"), &format!("must be set with {setting}_cert_file"));
                }
                (None, Some(_)) => {
                    return fail(&format!("{setting}_cert_file"), &format!("must be set with {setting}_key_file"));
                }
                _ => {}
            }
        }
        if self.rate_limit.ca_file.is_some() && !self.rate_limit.url.is_tls() {
            return fail("rate_limit.ca_file", "is for a rediss:// rate_limit.url");
        }
        for (i, route) in self.routes.iter().enumerate() {
            route.validate().map_err(|e| ConfigError(format!("routes[{i}].{e}")))?;
            if route.upstream.is_none() && self.server.decision_listen.is_none() {
                return fail(
                    &format!("routes[{i}].upstream"),
                    "is required unless server.decision_listen is set (a route without one only decides)",
                );
            }
        }
        self.validate_route_order()
    }

    /// The first route matching a request's path and method wins (SPEC §7), so a route whose
    /// every method an earlier route takes for every path it covers can never match: refused,
    /// naming both (a copy of a route, or `/api` for GET listed before `/api/orders` for GET).
    fn validate_route_order(&self) -> Result<(), ConfigError> {
        for (later, route) in self.routes.iter().enumerate() {
            let takes = |earlier: &RouteConfig, method: &Method| {
                prefix_matches(&earlier.prefix, &route.prefix)
                    && earlier.methods.iter().any(|m| m.0 == method || (method == Method::HEAD && m.0 == Method::GET))
            };
            let takers: Option<Vec<usize>> = route
                .methods
                .iter()
                .map(|method| self.routes[..later].iter().position(|earlier| takes(earlier, &method.0)))
                .collect();
            let Some(mut takers) = takers else { continue };
            takers.sort_unstable();
            takers.dedup();
            let takers: Vec<String> = takers.iter().map(|i| format!("routes[{i}]")).collect();
            return Err(ConfigError(format!(
                "routes[{later}]: can never match: {} (the first match wins) takes every request to {} \
                 with its methods",
                takers.join(" and "),
                route.prefix
            )));
        }
        Ok(())
    }
}

impl RouteConfig {
    /// Every check of a route that needs nothing but the route itself.
    pub(super) fn validate(&self) -> Result<(), String> {
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
        if self.methods.is_empty() {
            return Err("methods: must list at least one method".to_owned());
        }
        Ok(())
    }
}

/// A `Host` header value: a host and an optional port, nothing else.
fn is_host(raw: &str) -> bool {
    raw.parse::<http::uri::Authority>().is_ok_and(|authority| authority.as_str() == raw && !raw.contains('@'))
}

impl Config {
    /// `[[admin.tokens]]`: each name says who made a change in the audit log, so names are
    /// distinct and none is one keygate gives (`admin` for `server.admin_token`, `cli:…` for the
    /// CLI on the store); each token is distinct, so a token has one role. The message names the
    /// entry, never a token.
    fn validate_admin_tokens(&self) -> Result<(), ConfigError> {
        let tokens = &self.admin.tokens;
        for (i, entry) in tokens.iter().enumerate() {
            let fail = |field: &str, why: &str| Err(ConfigError(format!("admin.tokens[{i}].{field}: {why}")));
            let name_ok = (1..=64).contains(&entry.name.len())
                && entry.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b));
            if !name_ok {
                return fail("name", "must be 1 to 64 characters of A-Z a-z 0-9 _ . - @");
            }
            if entry.name == "admin" {
                return fail("name", "admin is server.admin_token's name: choose another");
            }
            if tokens[..i].iter().any(|other| other.name == entry.name) {
                return fail("name", "is the name of an earlier entry");
            }
            if entry.token.len() < 16 || entry.token.len() > 512 || !entry.token.bytes().all(|b| b.is_ascii_graphic()) {
                return fail("token", "must be 16 to 512 visible ASCII characters");
            }
            let reused = tokens[..i].iter().any(|other| other.token == entry.token)
                || self.server.admin_token.as_deref() == Some(entry.token.as_str());
            if reused {
                return fail("token", "is the token of another entry or server.admin_token");
            }
        }
        Ok(())
    }
}
