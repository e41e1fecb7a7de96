//! CORS (SPEC §4). Actual requests get `Access-Control-Allow-Origin` exactly when their origin
//! is on the authenticated key's allowlist (decided in the pipeline). Preflights carry no
//! credentials, so they are answered from the union of all usable keys' allowlists.

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::error::{ApiError, ErrorCode};
use crate::origin::Origin;
use crate::preflight::PreflightIndex;
use crate::time::now_millis;

const ALLOW_HEADERS: &str = "Authorization, Content-Type, X-Session-Token, X-Request-Id";
const EXPOSE_HEADERS: &str = "Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Request-Id";
/// How long a browser may reuse a preflight answer.
const MAX_AGE_SECONDS: u32 = 600;

pub(crate) fn add_response_headers(headers: &mut HeaderMap, origin: &Origin) {
    if let Ok(value) = HeaderValue::from_str(origin.as_str()) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub(crate) fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight: 204 with the CORS headers for an origin some usable key allows, else
/// 403 `ORIGIN_NOT_ALLOWED` without any. Until the index's first fill is in place it cannot
/// tell, so it waits for it (503 if it takes longer than `preflight::FILL_WAIT`).
pub(crate) async fn preflight(headers: &HeaderMap, index: &PreflightIndex, methods: &[Method]) -> Response {
    if !index.wait_filled().await {
        return ApiError::unavailable("the preflight index is still loading").into_response();
    }
    let now = now_millis();
    let mut origins = headers.get_all(header::ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(value), None) => value.to_str().ok().and_then(|raw| Origin::parse(raw).ok()),
        _ => None,
    };
    let Some(origin) = origin.filter(|origin| index.allows(origin, now)) else {
        return ApiError::new(ErrorCode::OriginNotAllowed, "this origin is not allowed").into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(origin.as_str()) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    let methods = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    // A path without routes has no methods to allow: the header is left out.
    if !methods.is_empty()
        && let Ok(methods) = HeaderValue::from_str(&methods)
    {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECONDS));
    response
}
