//! Turning a decision request back into the request it stands for (SPEC §14).
//!
//! - `/forward-auth`: nginx (`auth_request`) sends `X-Original-Method` and `X-Original-URI`
//!   as its configuration sets them; Caddy (`forward_auth`) and Traefik (`forwardAuth`) send
//!   `X-Forwarded-Method` and `X-Forwarded-Uri`. Either pair is read, the latter first.
//! - `/ext-authz/<original path>`: Envoy's HTTP `ext_authz` with `path_prefix: /ext-authz`
//!   sends the original method as its own and the original path under the prefix.
//!
//! The headers stay as the proxy passed them on: the client's `Authorization` (or the
//! configured key headers), `Origin`, `X-Session-Token`, and `X-Forwarded-For` (believed only
//! from a trusted proxy, as on the public listener).

use axum::extract::Request;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Uri};

use crate::error::{ApiError, Detail};

pub(super) const FORWARD_AUTH: &str = "/forward-auth";
/// The methods `/forward-auth` answers on. nginx, Caddy and Traefik ask with GET whatever the
/// original's method (it comes in a header); the others are for proxies and clients that ask
/// with the original's. Any other (TRACE, a made-up token) is 405.
pub(super) const FORWARD_AUTH_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS];
const EXT_AUTHZ: &str = "/ext-authz";

/// The two spellings of each header, the one Caddy and Traefik send first.
const METHOD_HEADERS: [&str; 2] = ["X-Forwarded-Method", "X-Original-Method"];
const URI_HEADERS: [&str; 2] = ["X-Forwarded-Uri", "X-Original-URI"];

/// `None` when `request` is not a decision about another request; else the request put in
/// the original's place, or why it cannot be.
pub(super) fn turn_back(request: &mut Request) -> Option<Result<(), ApiError>> {
    let path = request.uri().path();
    if path == FORWARD_AUTH {
        return Some(forwarded(request));
    }
    let under = path.strip_prefix(EXT_AUTHZ).filter(|rest| rest.is_empty() || rest.starts_with('/'))?;
    let original = match (under, request.uri().query()) {
        ("", None) => "/".to_owned(),
        ("", Some(query)) => format!("/?{query}"),
        (under, None) => under.to_owned(),
        (under, Some(query)) => format!("{under}?{query}"),
    };
    Some(place(request, None, &original, "path"))
}

/// `/forward-auth`: the method and URI from whichever pair of headers the proxy sent.
fn forwarded(request: &mut Request) -> Result<(), ApiError> {
    let headers = request.headers();
    let mut details = Vec::new();
    let method = one_of(headers, METHOD_HEADERS, &mut details);
    let uri = one_of(headers, URI_HEADERS, &mut details);
    let (Some((method_header, method)), Some((uri_header, uri))) = (method, uri) else {
        return Err(ApiError::validation(details));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| ApiError::validation(vec![Detail::new(method_header, "is not an HTTP method")]))?;
    place(request, Some(method), &uri, uri_header)
}

/// The value of the first of `names` present, with the name it came in; a missing pair, a
/// header sent twice, or one that is not text is a detail.
fn one_of(headers: &HeaderMap, names: [&'static str; 2], details: &mut Vec<Detail>) -> Option<(&'static str, String)> {
    let Some(name) = names.into_iter().find(|name| headers.contains_key(*name)) else {
        details.push(Detail::new(names[0], format!("is required (or {}): the original request's", names[1])));
        return None;
    };
    let mut values = headers.get_all(name).iter();
    match (values.next().and_then(|v| v.to_str().ok()), values.next()) {
        (Some(value), None) if !value.trim().is_empty() => Some((name, value.trim().to_owned())),
        _ => {
            details.push(Detail::new(name, "must be sent once, as text"));
            None
        }
    }
}

/// Puts `method` (if given) and the origin-form `target` (path and query) in place.
fn place(request: &mut Request, method: Option<Method>, target: &str, named: &str) -> Result<(), ApiError> {
    let refused = || ApiError::validation(vec![Detail::new(named, "must be a path, with its query if any")]);
    if !target.starts_with('/') {
        return Err(refused());
    }
    let target: PathAndQuery = target.parse().map_err(|_| refused())?;
    *request.uri_mut() = Uri::from(target);
    if let Some(method) = method {
        *request.method_mut() = method;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turned(method: &str, uri: &str, headers: &[(&str, &str)]) -> Option<Result<(String, String), String>> {
        let mut request = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(axum::body::Body::empty()).unwrap();
        let turned = turn_back(&mut request)?;
        Some(
            turned
                .map(|()| (request.method().to_string(), request.uri().to_string()))
                .map_err(|e| format!("{:?}", e.details)),
        )
    }

    #[test]
    fn either_pair_of_headers_gives_the_original_method_and_uri() {
        let caddy = [("X-Forwarded-Method", "DELETE"), ("X-Forwarded-Uri", "/api/v1/orders/7?x=1")];
        assert_eq!(turned("GET", "/forward-auth", &caddy), Some(Ok(("DELETE".into(), "/api/v1/orders/7?x=1".into()))));
        let nginx = [("X-Original-Method", "POST"), ("X-Original-URI", "/api/v1/orders")];
        assert_eq!(turned("GET", "/forward-auth", &nginx), Some(Ok(("POST".into(), "/api/v1/orders".into()))));
    }

    #[test]
    fn a_missing_or_bad_header_is_named() {
        let missing = turned("GET", "/forward-auth", &[]).unwrap().unwrap_err();
        assert!(missing.contains("X-Forwarded-Method") && missing.contains("X-Original-Method"), "{missing}");
        let no_uri = turned("GET", "/forward-auth", &[("X-Original-Method", "GET")]).unwrap().unwrap_err();
        assert!(no_uri.contains("X-Forwarded-Uri") && no_uri.contains("X-Original-URI"), "{no_uri}");
        let absolute = [("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "http://evil/x")];
        assert!(turned("GET", "/forward-auth", &absolute).unwrap().unwrap_err().contains("X-Forwarded-Uri"));
        let method = [("X-Forwarded-Method", "G E T"), ("X-Forwarded-Uri", "/x")];
        assert!(turned("GET", "/forward-auth", &method).unwrap().unwrap_err().contains("not an HTTP method"));
    }

    #[test]
    fn ext_authz_takes_the_path_under_its_prefix_and_the_method_as_it_came() {
        assert_eq!(
            turned("PATCH", "/ext-authz/api/v1/orders/7?q", &[]),
            Some(Ok(("PATCH".into(), "/api/v1/orders/7?q".into())))
        );
        assert_eq!(turned("GET", "/ext-authz", &[]), Some(Ok(("GET".into(), "/".into()))));
        assert_eq!(turned("GET", "/ext-authzx/a", &[]), None);
        assert_eq!(turned("POST", "/v1/verify", &[]), None);
    }
}
