//! The gateway's route table (SPEC §7, §10): whole-segment path prefixes and exact,
//! case-sensitive methods; the first route matching both wins. `HEAD` is allowed wherever
//! `GET` is.

// Without the gateway, configured routes are refused at load: the table is always empty.
#![cfg_attr(not(feature = "gateway"), allow(dead_code))]

use http::Method;

use crate::config::RouteConfig;
use crate::paths::{LooseMatch, prefix_matches, prefix_matches_loosely};
use crate::pipeline::Policy;

/// A configured route, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub prefix: String,
    pub methods: Vec<Method>,
    /// None: the route only decides (SPEC §14); the gateway answers it 404.
    pub upstream: Option<Upstream>,
    /// Whether the key's `meta` goes along as `X-Keygate-Meta` (`forward_meta`), to the
    /// upstream or in a decision.
    pub forward_meta: bool,
    pub policy: Policy,
}

/// Where a route forwards to: `scheme://authority`, without a path.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// The `Host` the upstream is sent, made once: its host, and its port unless it is the
    /// scheme's default — what hyper's client would otherwise write on every request.
    pub host: Option<http::HeaderValue>,
}

impl Upstream {
    fn new(scheme: http::uri::Scheme, authority: http::uri::Authority) -> Self {
        let default_port = if scheme == http::uri::Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => format!("{}:{port}", authority.host()),
            _ => authority.host().to_owned(),
        };
        // A parsed authority's host is always a valid value; were it not, hyper writes its own.
        Self { scheme, authority, host: http::HeaderValue::try_from(host).ok() }
    }
}

pub(crate) enum Resolution {
    /// The index of the route.
    Found(usize),
    MethodNotAllowed,
    NotFound,
    /// The path matches a more specific route only if letter case is ignored.
    CaseMismatch,
    /// The path matches a more specific route only if a segment's suffix, trailing dots or
    /// trailing whitespace are dropped (SPEC §17).
    SuffixMismatch,
}

impl Route {
    pub(crate) fn from_config(config: &RouteConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            methods: config.methods.iter().map(|method| method.0.clone()).collect(),
            upstream: config.upstream.as_ref().map(|url| Upstream::new(url.scheme.clone(), url.authority.clone())),
            forward_meta: config.forward_meta,
            policy: Policy {
                label: config.prefix.clone(),
                scope: config.scope.clone(),
                module: config.module.clone(),
                write: config.write,
                mints_session: false,
            },
        }
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.iter().any(|m| m == method || (method == Method::HEAD && m == Method::GET))
    }
}

/// Resolves a request (its path in normal form, see [`crate::paths`]) to the first route
/// matching its path and method.
///
/// A path that a looser router would read as a more specific route is refused: `/orders/INTERNAL`
/// must not reach an upstream that routes case-insensitively (Express does by default) under
/// `/orders`'s checks when `/orders/internal` has stricter ones, nor `/orders/internal.json`
/// one that drops format suffixes (Rails), nor `/orders/internal.` or `/orders/internal%20`
/// one that drops trailing dots and spaces (IIS).
pub(crate) fn resolve(routes: &[Route], path: &str, method: &Method) -> Resolution {
    let mut found = None;
    let mut longest_match = None;
    let mut longest_loose: Option<(usize, LooseMatch)> = None;
    for (index, route) in routes.iter().enumerate() {
        let length = route.prefix.trim_end_matches('/').len();
        if prefix_matches(&route.prefix, path) {
            longest_match = longest_match.max(Some(length));
            if found.is_none() && route.allows(method) {
                found = Some(index);
            }
        } else if let Some(how) = prefix_matches_loosely(&route.prefix, path) {
            longest_loose = longest_loose.max(Some((length, how)));
        }
    }
    match longest_loose {
        Some((length, how)) if Some(length) > longest_match => {
            return match how {
                LooseMatch::Case => Resolution::CaseMismatch,
                LooseMatch::Suffix => Resolution::SuffixMismatch,
            };
        }
        _ => {}
    }
    match (found, longest_match) {
        (Some(index), _) => Resolution::Found(index),
        (None, Some(_)) => Resolution::MethodNotAllowed,
        (None, None) => Resolution::NotFound,
    }
}

/// The methods the routes at `path` accept, for `Access-Control-Allow-Methods`.
pub(crate) fn methods_at(routes: &[Route], path: &str) -> Vec<Method> {
    let mut methods: Vec<Method> = Vec::new();
    for route in routes.iter().filter(|r| prefix_matches(&r.prefix, path)) {
        for method in &route.methods {
            if !methods.contains(method) {
                methods.push(method.clone());
            }
        }
    }
    methods
}

/// The methods `path` answers, for a 405's `Allow`: the routes' methods, with `HEAD` after
/// `GET` (a route that answers one answers both).
pub(crate) fn allowed_at(routes: &[Route], path: &str) -> Vec<Method> {
    let mut methods = methods_at(routes, path);
    if let Some(get) = methods.iter().position(|m| m == Method::GET)
        && !methods.contains(&Method::HEAD)
    {
        methods.insert(get + 1, Method::HEAD);
    }
    methods
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_sent_upstream_drops_only_the_scheme_s_default_port() {
        let host = |url: &str| {
            let url: http::Uri = url.parse().unwrap();
            let upstream = Upstream::new(url.scheme().unwrap().clone(), url.authority().unwrap().clone());
            upstream.host.unwrap().to_str().unwrap().to_owned()
        };
        assert_eq!(host("http://orders.internal"), "orders.internal");
        assert_eq!(host("http://orders.internal:80"), "orders.internal");
        assert_eq!(host("https://orders.internal:443"), "orders.internal");
        assert_eq!(host("https://orders.internal:80"), "orders.internal:80");
        assert_eq!(host("http://127.0.0.1:3000"), "127.0.0.1:3000");
        assert_eq!(host("http://[::1]:8080"), "[::1]:8080");
    }

    fn route(prefix: &str, methods: &[&str]) -> Route {
        Route::from_config(&RouteConfig {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|m| m.parse().unwrap()).collect(),
            upstream: Some("http://127.0.0.1:3000".parse().unwrap()),
            module: None,
            scope: None,
            write: None,
            forward_meta: false,
        })
    }

    #[test]
    fn first_match_of_path_and_method_wins() {
        let routes = [
            route("/api/v1/orders", &["GET"]),
            route("/api/v1/orders", &["POST", "PURGE"]),
            route("/api/v1", &["GET"]),
        ];
        let found = |path, method: &str| match resolve(&routes, path, &Method::from_bytes(method.as_bytes()).unwrap()) {
            Resolution::Found(i) => Some(routes[i].methods[0].to_string()),
            Resolution::MethodNotAllowed => Some("405".to_owned()),
            Resolution::NotFound => None,
            Resolution::CaseMismatch => Some("400".to_owned()),
            Resolution::SuffixMismatch => Some("400 suffix".to_owned()),
        };
        assert_eq!(found("/api/v1/orders/7", "GET").as_deref(), Some("GET"));
        assert_eq!(found("/api/v1/orders/7", "HEAD").as_deref(), Some("GET"));
        assert_eq!(found("/api/v1/orders", "POST").as_deref(), Some("POST"));
        assert_eq!(found("/api/v1/orders", "PURGE").as_deref(), Some("POST"));
        assert_eq!(found("/api/v1/orders", "post").as_deref(), Some("405"));
        assert_eq!(found("/api/v1/orders", "DELETE").as_deref(), Some("405"));
        assert_eq!(found("/api/v1/other", "GET").as_deref(), Some("GET"));
        assert_eq!(found("/api/v2/other", "GET"), None);
        assert_eq!(found("/api/v1/Other", "GET").as_deref(), Some("GET"), "no more specific route");
        assert_eq!(found("/api/v1/Orders/7", "GET").as_deref(), Some("400"), "/api/v1/orders is more specific");
        assert_eq!(found("/api/v1/ORDERS/7", "POST").as_deref(), Some("400"));
        assert_eq!(found("/API/V1/orders", "GET").as_deref(), Some("400"));
        // The suffix spellings of SPEC §17: /api/v1/orders.json is /api/v1/orders to Rails.
        assert_eq!(found("/api/v1/orders.json", "GET").as_deref(), Some("400 suffix"));
        assert_eq!(found("/api/v1/orders./7", "GET").as_deref(), Some("400 suffix"));
        assert_eq!(found("/api/v1/orders/7.json", "GET").as_deref(), Some("GET"), "no more specific route");
        assert_eq!(found("/api/v1/other.json", "GET").as_deref(), Some("GET"));
        let methods: Vec<String> = methods_at(&routes, "/api/v1/orders").iter().map(|m| m.to_string()).collect();
        assert_eq!(methods, ["GET", "POST", "PURGE"]);
    }
}
