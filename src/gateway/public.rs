//! Routing on the public listener, step 2 of [`super::stack`]. Before the pipeline runs, a
//! request is routed (SPEC §2): a bad path is 400; a CORS preflight under `/api/v1` or on any
//! routed path is answered from the allowlists; an unknown path is 404 and a known path with
//! another method 405. keygate's own paths (`/api/v1/sessions`, health, JWKS, the document)
//! come first, ahead of the configured routes, which may lie on any path. Every judged route —
//! built in or configured — is a service wrapped in the one pipeline layer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use tower::ServiceExt;

use super::routes::{Resolution, Route, allowed_at, methods_at, resolve};
#[cfg(feature = "gateway")]
use super::websocket;
use crate::cors;
use crate::error::{ApiError, ErrorCode, data_response};
use crate::layer::{normalize_request_path, path_refused};
use crate::metrics::RouteMetrics;
use crate::paths::SESSIONS_PATH;
use crate::pipeline::{Pipeline, Principal};
use crate::preflight::PreflightIndex;
use crate::session::Sessions;
use crate::store::Store;
use crate::time::{format_rfc3339, now_millis};

/// A route's service once routed: the pipeline around its handler ([`super::stack`], 3 and 4).
pub(crate) type Handler = tower::util::BoxCloneSyncService<Request, Response, std::convert::Infallible>;

/// The configured routes and their services, made by [`super::stack`]: what the public and the
/// decision listener (`crate::decision`) both route by.
pub(crate) struct RouteTable {
    pub pipeline: Arc<Pipeline>,
    pub preflight: Arc<PreflightIndex>,
    pub routes: Vec<Route>,
    /// `handlers[i]` serves `routes[i]`.
    pub handlers: Vec<Handler>,
}

/// What routing on the public listener needs: the route table and keygate's own paths.
pub(crate) struct PublicState {
    pub table: RouteTable,
    pub store: Arc<dyn Store>,
    pub create_session: Handler,
    /// Requests refused before any route was found.
    pub unmatched: RouteMetrics,
    /// True once shutdown begins: not ready any more.
    pub draining: tokio::sync::watch::Receiver<bool>,
}

fn under_api(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/")
}

pub(crate) async fn dispatch(state: &PublicState, request: Request) -> Response {
    let started = std::time::Instant::now();
    let routed = route(state, request).await;
    answered(&state.unmatched, routed, started)
}

/// The response of a routed request; a refusal before any route was found (400, 404, 405) is
/// counted as route "unmatched".
pub(crate) fn answered(unmatched: &RouteMetrics, routed: Result<Response, Response>, started: Instant) -> Response {
    routed.unwrap_or_else(|refusal| {
        let code = refusal.extensions().get::<ErrorCode>().copied();
        unmatched.record(code, refusal.status(), started);
        refusal
    })
}

/// Routes a request and answers it; `Err` is a refusal before any route was found.
async fn route(state: &PublicState, mut request: Request) -> Result<Response, Response> {
    if let Some(answer) = preflight(&state.table, &mut request).await? {
        return Ok(answer);
    }
    let path = request.uri().path();
    let method = request.method();
    let is_read = method == Method::GET || method == Method::HEAD;
    let handler = match path {
        SESSIONS_PATH if method == Method::POST => state.create_session.clone(),
        "/healthz" if is_read => return Ok(healthy()),
        "/readyz" if is_read => return Ok(readiness(state).await),
        "/.well-known/jwks.json" if is_read => {
            return Ok(json_text(state.table.pipeline.sessions().jwks().to_string()));
        }
        "/openapi.json" if is_read => return Ok(json_text(crate::openapi::public().to_owned())),
        SESSIONS_PATH => return Err(method_not_allowed(&[Method::POST])),
        "/healthz" | "/readyz" | "/.well-known/jwks.json" | "/openapi.json" => {
            return Err(method_not_allowed(&[Method::GET, Method::HEAD]));
        }
        _ => configured(&state.table, &mut request)?,
    };
    let Ok(response) = handler.oneshot(request).await;
    Ok(response)
}

/// The path put in normal form (400 when it has none), then a CORS preflight answered from the
/// allowlists (SPEC §4) — under /api/v1, and on any path some route covers — or `None`.
pub(crate) async fn preflight(table: &RouteTable, request: &mut Request) -> Result<Option<Response>, Response> {
    normalize_request_path(request).map_err(IntoResponse::into_response)?;
    let path = request.uri().path();
    if !cors::is_preflight(request.method(), request.headers()) {
        return Ok(None);
    }
    let methods = if path == SESSIONS_PATH { vec![Method::POST] } else { methods_at(&table.routes, path) };
    // Answered under /api/v1, and on any path some route covers (it has methods there).
    if !under_api(path) && methods.is_empty() {
        return Ok(None);
    }
    Ok(Some(cors::preflight(request.headers(), &table.preflight, &methods).await))
}

/// The service of the configured route a request resolves to, or the refusal: 404, 405 with
/// `Allow`, 400 for a spelling of a more specific route. A WebSocket handshake's credentials
/// are taken out of its protocol header here, before anything could forward them.
#[expect(
    clippy::result_large_err,
    reason = "the refusal is the answer, given once per request: boxing it buys nothing"
)]
pub(crate) fn configured(table: &RouteTable, request: &mut Request) -> Result<Handler, Response> {
    let (path, method) = (request.uri().path(), request.method());
    match resolve(&table.routes, path, method) {
        Resolution::Found(index) => {
            #[cfg(feature = "gateway")]
            if method == Method::GET && websocket::is_upgrade(request.headers()) {
                // Before the pipeline: a page's credentials may be protocol entries.
                if let Some(marker) = websocket::take_credentials(request.headers_mut()) {
                    request.extensions_mut().insert(marker);
                }
            }
            Ok(table.handlers[index].clone())
        }
        Resolution::MethodNotAllowed => Err(method_not_allowed(&allowed_at(&table.routes, path))),
        Resolution::NotFound => Err(no_route().into_response()),
        Resolution::CaseMismatch => {
            Err(path_refused("differs only in letter case from a more specific route").into_response())
        }
        Resolution::SuffixMismatch => Err(path_refused(
            "reads as a more specific route once a segment's suffix, trailing dots or spaces are dropped",
        )
        .into_response()),
    }
}

/// 405, with the `Allow` header RFC 9110 requires: the methods the path does answer.
pub(crate) fn method_not_allowed(methods: &[Method]) -> Response {
    let mut response = ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this path").into_response();
    let allow = methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// `POST /api/v1/sessions`, once the pipeline allowed it: a token bound to the key and origin.
pub(crate) fn mint_session(sessions: &Sessions, request: &Request) -> Response {
    let minted = request.extensions().get::<Principal>().and_then(|principal| {
        let origin = principal.origin.as_ref()?;
        sessions.mint(&principal.record.key, origin, now_millis())
    });
    let Some(session) = minted else { return ApiError::internal().into_response() };
    crate::metrics::session_minted();
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Minted<'a> {
        session_token: &'a str,
        expires_at: String,
    }
    let body = Minted { session_token: &session.token, expires_at: format_rfc3339(session.expires_at * 1000) };
    let mut response = data_response(StatusCode::CREATED, &body);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Ready when both the store and the rate-limit backend answer.
async fn readiness(state: &PublicState) -> Response {
    if *state.draining.borrow() {
        // A load balancer takes this instance out of rotation before its listeners close.
        return ApiError::unavailable("keygate is shutting down").into_response();
    }
    if let Err(error) = state.store.ping().await {
        tracing::warn!(%error, "readiness: store unreachable");
        return ApiError::unavailable("the store is unreachable").into_response();
    }
    // Ready is what this instance can do: with `allow` or `local` it serves requests while
    // the shared limiter is down, so it says so and stays in rotation; a balancer taking every
    // instance out at once for a Redis outage would be the larger failure.
    let pipeline = &state.table.pipeline;
    let limiter_reachable = pipeline.limiter_reachable().await;
    if !limiter_reachable && pipeline.refuses_without_limiter() {
        return ApiError::unavailable("the rate-limit backend is unreachable (rate_limit.on_backend_error = \"deny\")")
            .into_response();
    }
    let limiter = if limiter_reachable { "reachable" } else { "unreachable" };
    // Ready before the preflight index is: requests are served while it fills behind, and
    // preflights wait for it (SPEC §4; docs/design.md).
    let preflights = if state.table.preflight.is_filled() { "ready" } else { "filling" };
    data_response(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready", "rateLimiter": limiter, "preflightIndex": preflights }),
    )
}

/// A JSON document served as it is (`/openapi.json`, the JWKS).
pub(crate) fn json_text(body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.into()).into_response()
}

/// `GET /healthz`: the process is alive (on the public and the decision listener).
pub(crate) fn healthy() -> Response {
    data_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// A path no route covers (or one only decisions use, asked of the gateway).
pub(crate) fn no_route() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no route for this path")
}
