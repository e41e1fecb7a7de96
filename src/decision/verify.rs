//! `POST /v1/verify` (SPEC §14): "is this key good?" for an application in any language.
//!
//! The body names a request — a key, and if it has them an origin, a session token, a method
//! and a path — which is built as the request it describes and judged like a forwarded one:
//! routed when it names a path (the route's scope, module and write rule then apply), else by
//! the pipeline alone, with no route's demands. It is counted and limited like a request. The
//! verdict comes back as data, always 200: `valid: true` with who the caller is and its rate
//! limit, or `valid: false` with the code and message the gateway would have answered. Only a
//! body that names no request is refused (400 with `details`).

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::DecisionState;
use crate::admin::fields::{Fields, parsed};
use crate::error::{ApiError, Detail, ErrorCode, data_response};
use crate::gateway::public;
use crate::layer::normalize_request_path;
use crate::pipeline::{Principal, SESSION_TOKEN_HEADER};
use crate::request_log::LogNotes;

/// The largest body read: every body the document allows fits (its fields are at most 12,800
/// ASCII characters, each at most 2 bytes in JSON), so a valid question is never 413.
const MAX_BODY_BYTES: usize = 64 * 1024;
const FIELDS: &[&str] = &["key", "origin", "sessionToken", "method", "path"];

pub(super) async fn answer(state: &DecisionState, request: Request) -> Response {
    match verdict(state, request).await {
        Ok(response) | Err(response) => response,
    }
}

async fn verdict(state: &DecisionState, request: Request) -> Result<Response, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is over {MAX_BODY_BYTES} bytes")).into_response()
    })?;
    let (mut asked, routed) = described(&bytes, state).map_err(IntoResponse::into_response)?;
    // The caller's address, as the public listener would have it.
    if let Some(peer) = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>() {
        asked.extensions_mut().insert(*peer);
    }
    if let Some(forwarded) = parts.headers.get("x-forwarded-for") {
        asked.headers_mut().insert("x-forwarded-for", forwarded.clone());
    }
    let handler = if !routed {
        state.unrouted.clone()
    } else {
        match public::configured(&state.table, &mut asked) {
            Ok(handler) => handler,
            Err(refusal) => return Ok(translated(refusal).await),
        }
    };
    let Ok(judged) = handler.oneshot(asked).await;
    Ok(translated(judged).await)
}

/// The request the body describes, and whether it names a path to route; or a 400 naming each
/// bad field.
fn described(bytes: &[u8], state: &DecisionState) -> Result<(Request, bool), ApiError> {
    let mut fields = Fields::parse(bytes, FIELDS)?;
    let key = fields.required("key", &parsed(printable(512, false)));
    let origin = fields.optional("origin", &parsed(printable(2048, true)));
    let token = fields.optional("sessionToken", &parsed(printable(8192, true)));
    let method = fields.optional(
        "method",
        &parsed(|m: &str| match m.len() {
            1..=32 => Method::from_bytes(m.as_bytes()).map_err(|_| "must be an HTTP method"),
            _ => Err("must be an HTTP method of at most 32 characters"),
        }),
    );
    let path = fields.optional("path", &parsed(target));
    fields.finish()?;
    let Some(key) = key else { return Err(ApiError::validation(vec![Detail::new("key", "is required")])) };
    let value = |name: &str, text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| ApiError::validation(vec![Detail::new(name, "must be printable ASCII")]))
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method.unwrap_or(Method::GET);
    let routed = path.is_some();
    if let Some(path) = path {
        *request.uri_mut() = Uri::from(path);
        // Refused as the public listener refuses it, the detail's path being `path`.
        normalize_request_path(&mut request)?;
    }
    let (name, credential) = state.table.pipeline.credential_header(&key);
    request.headers_mut().insert(name, value("key", &credential)?);
    if let Some(origin) = &origin {
        request.headers_mut().insert(header::ORIGIN, value("origin", origin)?);
    }
    if let Some(token) = &token {
        request.headers_mut().insert(HeaderName::from_static(SESSION_TOKEN_HEADER), value("sessionToken", token)?);
    }
    Ok((request, routed))
}

/// Printable ASCII of 1 to `max` characters, not all spaces (with `spaces`) or none at all: what
/// a header can carry as it is, and what the document's patterns say.
fn printable(max: usize, spaces: bool) -> impl Fn(&str) -> Result<String, String> {
    move |text| {
        let allowed = |b: u8| b.is_ascii_graphic() || (spaces && b == b' ');
        if (1..=max).contains(&text.len()) && text.bytes().all(allowed) && text.bytes().any(|b| b != b' ') {
            Ok(text.to_owned())
        } else if spaces {
            Err(format!("must be 1 to {max} printable ASCII characters"))
        } else {
            Err(format!("must be 1 to {max} printable ASCII characters, without spaces"))
        }
    }
}

/// A request target: a path, with its query if any, of at most 2,048 characters.
fn target(text: &str) -> Result<PathAndQuery, &'static str> {
    let printable = text.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if !text.starts_with('/') || text.len() > 2048 || !printable {
        return Err(
            "must be a path (starting with /) of at most 2048 printable ASCII characters, with its query if any",
        );
    }
    text.parse().map_err(|_| "is not a valid path")
}

/// A judged request's response as the verdict's data, with its rate-limit headers.
async fn translated(judged: Response) -> Response {
    let (parts, body) = judged.into_parts();
    let data = match parts.extensions.get::<Principal>() {
        Some(principal) => allowed(principal, &parts.headers),
        None => {
            let code = parts.extensions.get::<ErrorCode>().copied().unwrap_or(ErrorCode::InternalError);
            let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
            let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            json!({ "valid": false, "code": code.as_str(), "message": envelope["error"]["message"] })
        }
    };
    let mut response = data_response(StatusCode::OK, &data);
    for (name, value) in &parts.headers {
        let name_text = name.as_str();
        if name_text.starts_with("x-ratelimit-") || name_text.starts_with("ratelimit") {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    // For the request log: whose request it was, and how it ended.
    if let Some(notes) = parts.extensions.get::<LogNotes>() {
        response.extensions_mut().insert(notes.clone());
    }
    if let Some(code) = parts.extensions.get::<ErrorCode>() {
        response.extensions_mut().insert(*code);
    }
    response
}

fn allowed(principal: &Principal, headers: &http::HeaderMap) -> Value {
    let record = &principal.record;
    let number = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let rate_limit = match (number("x-ratelimit-limit"), number("x-ratelimit-remaining"), number("x-ratelimit-reset")) {
        (Some(limit), Some(remaining), Some(reset)) => {
            json!({ "limit": limit, "remaining": remaining, "reset": reset })
        }
        // The limiter failed and `on_backend_error = "allow"` let the request through uncounted.
        _ => Value::Null,
    };
    let meta = record.key.meta.as_ref().and_then(|meta| serde_json::from_str::<Value>(meta.as_str()).ok());
    json!({
        "valid": true,
        "tenantId": record.tenant.id,
        "keyId": record.key.id,
        "scopes": record.key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "channel": principal.channel.as_str(),
        "meta": meta,
        "rateLimit": rate_limit,
    })
}
