//! `POST /v1/verify` (SPEC §14): "is this key good?" for an application in any language.
//!
//! The body names a request — a key, and if it has them an origin, a session token, a method
//! and a path — which is built as the request it describes and judged like a forwarded one:
//! routed when it names a path (the route's scope, module and write rule then apply), else by
//! the pipeline alone, with no route's demands. It is counted and limited like a request. The
//! verdict comes back as data, always 200: `valid: true` with who the caller is and its rate
//! limit, or `valid: false` with the code and message the gateway would have answered. Only a
//! body that names no request is refused (400 with `details`).

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower::ServiceExt;

use super::DecisionState;
use crate::admin::fields::{Fields, parsed};
use crate::error::{ApiError, Detail, ErrorCode, data_response};
use crate::gateway::proxy::X_FORWARDED_FOR;
use crate::gateway::public;
use crate::layer::normalize_request_path;
use crate::model::Meta;
use crate::pipeline::{Principal, SESSION_TOKEN_HEADER, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
use crate::request_log::LogNotes;
use crate::scope::Scope;

/// The largest body read: every body the document allows fits (its fields are at most 12,800
/// ASCII characters, each at most 2 bytes in JSON), so a valid question is never 413.
const MAX_BODY_BYTES: usize = 64 * 1024;
const FIELDS: &[&str] = &["key", "origin", "sessionToken", "method", "path"];
// Made once: a lookup or insert by `&str` parses and checks the name on every call.
const SESSION_TOKEN: HeaderName = HeaderName::from_static(SESSION_TOKEN_HEADER);

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
    if let Some(forwarded) = parts.headers.get(X_FORWARDED_FOR) {
        asked.headers_mut().insert(X_FORWARDED_FOR, forwarded.clone());
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
    let question = match Question::read(bytes) {
        Some(question) => question,
        None => Question::from_fields(bytes)?,
    };
    let value = |name: &str, text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| ApiError::validation(vec![Detail::new(name, "must be printable ASCII")]))
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = question.method.unwrap_or(Method::GET);
    let routed = question.path.is_some();
    if let Some(path) = question.path {
        *request.uri_mut() = Uri::from(path);
        // Refused as the public listener refuses it, the detail's path being `path`.
        normalize_request_path(&mut request)?;
    }
    let (name, credential) = state.table.pipeline.credential_header(&question.key);
    request.headers_mut().insert(name, value("key", &credential)?);
    if let Some(origin) = &question.origin {
        request.headers_mut().insert(header::ORIGIN, value("origin", origin)?);
    }
    if let Some(token) = &question.token {
        request.headers_mut().insert(SESSION_TOKEN, value("sessionToken", token)?);
    }
    Ok((request, routed))
}

/// What a body asks about, each field checked.
struct Question<'a> {
    key: Cow<'a, str>,
    origin: Option<Cow<'a, str>>,
    token: Option<Cow<'a, str>>,
    method: Option<Method>,
    path: Option<PathAndQuery>,
}

/// A body as applications send it, read without a `Value` tree: an object of the document's
/// fields, each a string without escapes. Whatever else a body holds (another type, `null`, an
/// unknown or repeated field, an escape) is read again by [`Fields`], which names each problem.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WellFormed<'a> {
    key: &'a str,
    #[serde(default, borrow, deserialize_with = "present")]
    origin: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "present")]
    session_token: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "present")]
    method: Option<&'a str>,
    #[serde(default, borrow, deserialize_with = "present")]
    path: Option<&'a str>,
}

/// A field that is there is a string: `null` is not "absent" (then [`Fields`] says so).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<&'de str>, D::Error> {
    <&'de str>::deserialize(deserializer).map(Some)
}

impl<'a> Question<'a> {
    /// The question of a well-formed body whose every field is valid; `None` for any other.
    fn read(bytes: &'a [u8]) -> Option<Self> {
        // An object: serde would also read the struct from an array of its fields in order.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        let body: WellFormed<'a> = serde_json::from_slice(bytes).ok()?;
        let checked = |text: Option<&'a str>, max: usize| match text {
            Some(text) => printable_text(max, true, text).ok().map(|()| Some(Cow::Borrowed(text))),
            None => Some(None),
        };
        printable_text(512, false, body.key).ok()?;
        Some(Self {
            key: Cow::Borrowed(body.key),
            origin: checked(body.origin, 2048)?,
            token: checked(body.session_token, 8192)?,
            method: body.method.map(http_method).transpose().ok()?,
            path: body.path.map(target).transpose().ok()?,
        })
    }

    /// The question of any other body, or a 400 naming each bad field.
    fn from_fields(bytes: &[u8]) -> Result<Question<'static>, ApiError> {
        let mut fields = Fields::parse(bytes, FIELDS)?;
        let key = fields.required("key", &parsed(printable(512, false)));
        let origin = fields.optional("origin", &parsed(printable(2048, true)));
        let token = fields.optional("sessionToken", &parsed(printable(8192, true)));
        let method = fields.optional("method", &parsed(http_method));
        let path = fields.optional("path", &parsed(target));
        fields.finish()?;
        let Some(key) = key else { return Err(ApiError::validation(vec![Detail::new("key", "is required")])) };
        Ok(Question { key: key.into(), origin: origin.map(Cow::Owned), token: token.map(Cow::Owned), method, path })
    }
}

fn http_method(text: &str) -> Result<Method, &'static str> {
    match text.len() {
        1..=32 => Method::from_bytes(text.as_bytes()).map_err(|_| "must be an HTTP method"),
        _ => Err("must be an HTTP method of at most 32 characters"),
    }
}

/// Printable ASCII of 1 to `max` characters, not all spaces (with `spaces`) or none at all: what
/// a header can carry as it is, and what the document's patterns say.
fn printable(max: usize, spaces: bool) -> impl Fn(&str) -> Result<String, String> {
    move |text| printable_text(max, spaces, text).map(|()| text.to_owned())
}

fn printable_text(max: usize, spaces: bool, text: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_graphic() || (spaces && b == b' ');
    if (1..=max).contains(&text.len()) && text.bytes().all(allowed) && text.bytes().any(|b| b != b' ') {
        Ok(())
    } else if spaces {
        Err(format!("must be 1 to {max} printable ASCII characters"))
    } else {
        Err(format!("must be 1 to {max} printable ASCII characters, without spaces"))
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
    let mut response = match parts.extensions.get::<Principal>() {
        Some(principal) => data_response(StatusCode::OK, &Valid::of(principal, &parts.headers)),
        None => {
            let code = parts.extensions.get::<ErrorCode>().copied().unwrap_or(ErrorCode::InternalError);
            let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
            let mut envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let message = envelope["error"]["message"].take();
            data_response(StatusCode::OK, &Invalid { valid: false, code: code.as_str(), message })
        }
    };
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

/// `valid: true`: who the caller is and its rate limit, written from the cached key as it is.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Valid<'a> {
    valid: bool,
    tenant_id: &'a str,
    key_id: &'a str,
    #[serde(serialize_with = "texts")]
    scopes: &'a [Scope],
    channel: &'static str,
    meta: Option<&'a Meta>,
    rate_limit: Option<Budget>,
}

#[derive(Serialize)]
struct Budget {
    limit: u64,
    remaining: u64,
    reset: u64,
}

/// `valid: false`: the code and message the gateway would have answered.
#[derive(Serialize)]
struct Invalid {
    valid: bool,
    code: &'static str,
    message: Value,
}

impl<'a> Valid<'a> {
    fn of(principal: &'a Principal, headers: &http::HeaderMap) -> Self {
        let record = &principal.record;
        let number = |name| headers.get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let rate_limit = match (number(X_RATELIMIT_LIMIT), number(X_RATELIMIT_REMAINING), number(X_RATELIMIT_RESET)) {
            (Some(limit), Some(remaining), Some(reset)) => Some(Budget { limit, remaining, reset }),
            // The limiter failed and `on_backend_error = "allow"` let the request through uncounted.
            _ => None,
        };
        Self {
            valid: true,
            tenant_id: &record.tenant.id,
            key_id: &record.key.id,
            scopes: &record.key.scopes,
            channel: principal.channel.as_str(),
            meta: record.key.meta.as_ref(),
            rate_limit,
        }
    }
}

fn texts<S: serde::Serializer>(scopes: &&[Scope], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(scopes.iter().map(Scope::as_str))
}
