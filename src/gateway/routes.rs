//! The gateway's route table (SPEC §7, §10): whole-segment path prefixes and exact,
//! case-sensitive methods; the first route matching both wins. `HEAD` is allowed wherever
//! `GET` is.

use http::Method;

use crate::config::RouteConfig;
use crate::pipeline::Policy;
use crate::scope::Scope;

/// A configured route, parsed.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: String,
    pub methods: Vec<Method>,
    /// `scheme://authority` of the upstream, without a path.
    pub upstream: http::uri::Authority,
    pub policy: Policy,
}

pub enum Resolution {
    /// The index of the route.
    Found(usize),
    MethodNotAllowed,
    NotFound,
}

/// True when `path` is `prefix` or lies under it, on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Route {
    pub fn from_config(config: &RouteConfig) -> Result<Self, String> {
        let upstream: http::Uri = config.upstream.parse().map_err(|_| "upstream: not a URL".to_owned())?;
        let authority = match (upstream.scheme_str(), upstream.authority(), upstream.path_and_query()) {
            (Some("http"), Some(authority), path) if path.is_none_or(|p| p.as_str() == "/") => authority.clone(),
            _ => return Err("upstream: must be http://host[:port] without a path".to_owned()),
        };
        let mut methods = Vec::new();
        for raw in &config.methods {
            methods.push(Method::from_bytes(raw.as_bytes()).map_err(|_| format!("methods: {raw:?} is not a method"))?);
        }
        if methods.is_empty() {
            return Err("methods: must list at least one method".to_owned());
        }
        let scope = config.scope.as_deref().map(Scope::parse).transpose().map_err(|e| format!("scope: {e}"))?;
        Ok(Self {
            prefix: config.prefix.clone(),
            methods,
            upstream: authority,
            policy: Policy {
                label: config.prefix.clone(),
                scope,
                module: config.module.clone(),
                write: config.write,
                mints_session: false,
            },
        })
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.iter().any(|m| m == method || (method == Method::HEAD && m == Method::GET))
    }
}

/// Resolves a request to the first route matching its path and method.
pub fn resolve(routes: &[Route], path: &str, method: &Method) -> Resolution {
    let mut known_path = false;
    for (index, route) in routes.iter().enumerate().filter(|(_, r)| prefix_matches(&r.prefix, path)) {
        known_path = true;
        if route.allows(method) {
            return Resolution::Found(index);
        }
    }
    if known_path { Resolution::MethodNotAllowed } else { Resolution::NotFound }
}

/// The methods the routes at `path` accept, for `Access-Control-Allow-Methods`.
pub fn methods_at(routes: &[Route], path: &str) -> Vec<Method> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, methods: &[&str]) -> Route {
        Route::from_config(&RouteConfig {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|m| (*m).to_owned()).collect(),
            upstream: "http://127.0.0.1:3000".to_owned(),
            module: None,
            scope: None,
            write: None,
        })
        .unwrap()
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders"));
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders/"));
        assert!(prefix_matches("/api/v1/orders", "/api/v1/orders/7"));
        assert!(prefix_matches("/api/v1/orders/", "/api/v1/orders/7"));
        assert!(!prefix_matches("/api/v1/orders", "/api/v1/ordersx"));
        assert!(!prefix_matches("/api/v1/orders", "/api/v1/order"));
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
        };
        assert_eq!(found("/api/v1/orders/7", "GET").as_deref(), Some("GET"));
        assert_eq!(found("/api/v1/orders/7", "HEAD").as_deref(), Some("GET"));
        assert_eq!(found("/api/v1/orders", "POST").as_deref(), Some("POST"));
        assert_eq!(found("/api/v1/orders", "PURGE").as_deref(), Some("POST"));
        assert_eq!(found("/api/v1/orders", "post").as_deref(), Some("405"));
        assert_eq!(found("/api/v1/orders", "DELETE").as_deref(), Some("405"));
        assert_eq!(found("/api/v1/other", "GET").as_deref(), Some("GET"));
        assert_eq!(found("/api/v2/other", "GET"), None);
        let methods: Vec<String> = methods_at(&routes, "/api/v1/orders").iter().map(|m| m.to_string()).collect();
        assert_eq!(methods, ["GET", "POST", "PURGE"]);
    }

    #[test]
    fn upstreams_are_plain_http_authorities() {
        let mut config = RouteConfig {
            prefix: "/api/v1/x".to_owned(),
            methods: vec!["GET".to_owned()],
            upstream: "https://example.com".to_owned(),
            module: None,
            scope: None,
            write: None,
        };
        assert!(Route::from_config(&config).is_err());
        config.upstream = "http://example.com/base".to_owned();
        assert!(Route::from_config(&config).is_err());
        config.upstream = "http://example.com:8080/".to_owned();
        assert!(Route::from_config(&config).is_ok());
        config.methods = vec!["BAD METHOD".to_owned()];
        assert!(Route::from_config(&config).is_err());
    }
}
