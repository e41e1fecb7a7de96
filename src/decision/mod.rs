//! Decisions for the proxy a team already runs — nginx `auth_request`, Caddy `forward_auth`,
//! Traefik `forwardAuth`, Envoy's HTTP `ext_authz` — and for an application in any language
//! (`POST /v1/verify`), on `server.decision_listen` (SPEC §14).
//!
//! There is no second pipeline. A decision request is first turned back into the request it
//! stands for ([`original`]): its method and URI from the proxy's headers, or from the path
//! under `/ext-authz`, its headers as the client sent them. That request then meets what the
//! public listener's would: its path in normal form, a CORS preflight answered from the
//! allowlists, the configured routes, and each route's pipeline layer
//! ([`crate::layer::RequireKey`]) with its limits, usage counts and headers — around an answer
//! for the proxy ([`allow`]) instead of the reverse proxy. A refusal is keygate's own status,
//! envelope and headers, for the proxy to return as they are. `/v1/verify` builds the request
//! from its body and gives the same verdict as JSON ([`verify`]).
//!
//! The request log, outermost, logs the original method and path: the rewrite happens before
//! it, and a decision request that cannot be turned back is logged under its own path.

mod original;
mod verify;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use subtle::ConstantTimeEq;
use tower::ServiceExt;
use tower::service_fn;

use crate::admin::tokens::token_digest;
use crate::error::{ApiError, ErrorCode};
use crate::gateway::proxy::identity_headers;
use crate::gateway::public::{self, Handler, RouteTable};
use crate::metrics::RouteMetrics;
use crate::pipeline::Principal;
use crate::request_log::logged_around;

pub(crate) const DECISION_TOKEN_HEADER: &str = "x-keygate-decision-token";

/// What the decision listener routes by.
struct DecisionState {
    table: RouteTable,
    /// The pipeline around [`allow`] with no route's demands: `/v1/verify` without a `path`.
    unrouted: Handler,
    unmatched: RouteMetrics,
}

/// What the outer layer made of a decision request, for [`dispatch`].
#[derive(Clone)]
enum Asked {
    /// The request a proxy asks about, already put in its place.
    Original,
    /// Refused before it could be turned back (a wrong token, a missing header).
    Refused(ApiError),
    /// `/forward-auth` asked with a method no proxy uses for it (405).
    WrongMethod,
}

/// The decision listener's router over `table` (the configured routes, each around [`allow`]).
pub(crate) fn router(table: RouteTable, unrouted: Handler, token: Option<String>) -> Router {
    let trusted = table.pipeline.trusted_proxies().clone();
    let state = Arc::new(DecisionState { table, unrouted, unmatched: RouteMetrics::new("unmatched") });
    let token = token.map(|token| Arc::new(token_digest(token.as_bytes())));
    // Turned back, logged and answered as one service, as the public listener's: the router only
    // hands every request to it, without a middleware's boxed future and service clone.
    let decide = service_fn(move |request: Request| {
        let state = Arc::clone(&state);
        let envelope_in_header = request.headers().contains_key(ERROR_IN_HEADER);
        let request = turned_back(request, token.as_deref());
        let answered =
            logged_around("decision", &trusted, request, move |request| async move { dispatch(&state, request).await });
        async move {
            let response = answered.await;
            let response = if envelope_in_header { with_envelope_in_header(response).await } else { response };
            Ok::<_, Infallible>(response)
        }
    });
    Router::new().fallback_service(decide)
}

/// Asked for by a proxy that drops a decision's body (nginx's `auth_request`): a refusal's
/// envelope then also comes in [`ERROR_HEADER`], for the proxy to give the client as its body.
const ERROR_IN_HEADER: &str = "x-keygate-error-in-header";
const ERROR_HEADER: &str = "x-keygate-error";

async fn with_envelope_in_header(response: Response) -> Response {
    if response.extensions().get::<ErrorCode>().is_none() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // keygate's own envelope: small, in memory, and ASCII (its messages are).
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else { return ApiError::internal().into_response() };
    if let Ok(value) = HeaderValue::from_bytes(&bytes) {
        parts.headers.insert(ERROR_HEADER, value);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// Checks the decision token, then turns `/forward-auth` and `/ext-authz/…` requests into the
/// requests they stand for, marked [`Asked::Original`]; anything else passes as it came.
fn turned_back(mut request: Request, token: Option<&[u8; 32]>) -> Request {
    if let Some(expected) = token {
        let presented = request.headers().get(DECISION_TOKEN_HEADER).map(|v| token_digest(v.as_bytes()));
        if !presented.is_some_and(|presented| bool::from(presented.ct_eq(expected))) {
            let refusal = ApiError::new(ErrorCode::AdminTokenInvalid, "a valid X-Keygate-Decision-Token is required");
            request.extensions_mut().insert(Asked::Refused(refusal));
            return request;
        }
    }
    if request.uri().path() == original::FORWARD_AUTH && !original::FORWARD_AUTH_METHODS.contains(request.method()) {
        request.extensions_mut().insert(Asked::WrongMethod);
        return request;
    }
    let asked = match original::turn_back(&mut request) {
        Some(Ok(())) => Asked::Original,
        Some(Err(refusal)) => Asked::Refused(refusal),
        None => return request,
    };
    request.extensions_mut().insert(asked);
    request
}

async fn dispatch(state: &DecisionState, request: Request) -> Response {
    let started = Instant::now();
    let routed = match request.extensions().get::<Asked>().cloned() {
        Some(Asked::Refused(refusal)) => Err(refusal.into_response()),
        Some(Asked::WrongMethod) => Err(public::method_not_allowed(&original::FORWARD_AUTH_METHODS)),
        Some(Asked::Original) => judge(&state.table, request).await,
        None => own_path(state, request).await,
    };
    public::answered(&state.unmatched, routed, started)
}

/// The original request, judged as the public listener would judge it, answered for the proxy.
async fn judge(table: &RouteTable, mut request: Request) -> Result<Response, Response> {
    if let Some(answer) = public::preflight(table, &mut request).await? {
        return Ok(answer);
    }
    let handler = public::configured(table, &mut request)?;
    let Ok(response) = handler.oneshot(request).await;
    Ok(response)
}

/// The listener's own paths: `/v1/verify`, its document, health.
async fn own_path(state: &DecisionState, request: Request) -> Result<Response, Response> {
    let (method, path) = (request.method(), request.uri().path());
    let is_read = method == Method::GET || method == Method::HEAD;
    match path {
        "/v1/verify" if method == Method::POST => Ok(verify::answer(state, request).await),
        "/openapi.json" if is_read => Ok(public::json_text(crate::openapi::decision())),
        "/healthz" if is_read => Ok(public::healthy()),
        "/v1/verify" => Err(public::method_not_allowed(&[Method::POST])),
        "/openapi.json" | "/healthz" => Err(public::method_not_allowed(&[Method::GET, Method::HEAD])),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            "no decision endpoint at this path: /forward-auth, /ext-authz/…, /v1/verify",
        )
        .into_response()),
    }
}

/// The answer to an allowed request (SPEC §14): 200 without a body, with what keygate vouches
/// for (`X-Keygate-*`) for the proxy to copy to the upstream; the pipeline layer adds the
/// rate-limit and CORS headers. The [`Principal`] stays in the response for `/v1/verify`.
pub(crate) fn allow(
    forward_meta: bool,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
    service_fn(move |request: Request| async move {
        let mut response = StatusCode::OK.into_response();
        if let Some(principal) = request.extensions().get::<Principal>() {
            identity_headers(response.headers_mut(), principal, forward_meta);
            response.extensions_mut().insert(principal.clone());
        }
        Ok::<_, Infallible>(response)
    })
}
