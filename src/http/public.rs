//! The public listener. Before the pipeline runs, a request is routed: a CORS preflight under
//! `/api/v1` is answered from the allowlists; an unknown path is 404; a known path with another
//! method is 405. The gateway's configured routes will join this dispatch.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use crate::cache::Allowlists;
use crate::cors;
use crate::error::{ApiError, ErrorCode, data_response};
use crate::http::log::{LoggedIdentity, log_request};
use crate::pipeline::{Decision, Pipeline, Policy};
use crate::store::Store;
use crate::time::{format_rfc3339, now_millis};

pub const SESSIONS_PATH: &str = "/api/v1/sessions";

pub struct PublicState {
    pub pipeline: Arc<Pipeline>,
    pub allowlists: Arc<Allowlists>,
    pub store: Arc<dyn Store>,
}

pub fn router(state: Arc<PublicState>) -> Router {
    Router::new()
        .fallback(dispatch)
        .with_state(state)
        .layer(axum::middleware::from_fn(|request, next| log_request("public", request, next)))
}

fn under_api(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/")
}

async fn dispatch(State(state): State<Arc<PublicState>>, request: Request) -> Response {
    let path = request.uri().path();
    let method = request.method();
    if under_api(path) && cors::is_preflight(method, request.headers()) {
        let methods = if path == SESSIONS_PATH { "POST" } else { "GET, HEAD, POST, PUT, PATCH, DELETE" };
        return cors::preflight(request.headers(), &state.allowlists, methods, now_millis());
    }
    let is_read = method == Method::GET || method == Method::HEAD;
    match path {
        SESSIONS_PATH if method == Method::POST => create_session(&state, request).await,
        "/healthz" if is_read => data_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/readyz" if is_read => readiness(&state).await,
        "/.well-known/jwks.json" if is_read => jwks(&state),
        SESSIONS_PATH | "/healthz" | "/readyz" | "/.well-known/jwks.json" => {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this path").into_response()
        }
        _ => ApiError::new(ErrorCode::NotFound, "no route for this path").into_response(),
    }
}

/// `POST /api/v1/sessions`: steps 1–6 and 9, then a token bound to the key and the origin.
async fn create_session(state: &PublicState, request: Request) -> Response {
    let decision = state.pipeline.check(request.headers(), &Policy::create_session()).await;
    let mut response = match &decision.outcome {
        Ok(principal) => {
            let minted = principal
                .origin
                .as_ref()
                .and_then(|origin| state.pipeline.sessions().mint(&principal.record.key, origin, now_millis()));
            match minted {
                Some(session) => {
                    let body = serde_json::json!({
                        "sessionToken": session.token,
                        "expiresAt": format_rfc3339(session.expires_at * 1000),
                    });
                    let mut response = data_response(StatusCode::CREATED, &body);
                    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                None => ApiError::internal().into_response(),
            }
        }
        Err(error) => error.clone().into_response(),
    };
    finish(&decision, &mut response);
    response
}

/// What every pipeline-judged response carries: quota and CORS headers, and the log identity.
fn finish(decision: &Decision, response: &mut Response) {
    decision.decorate(response.headers_mut());
    if let Some((tenant, key_id)) = &decision.identity {
        response.extensions_mut().insert(LoggedIdentity { tenant: tenant.clone(), key_id: key_id.clone() });
    }
}

async fn readiness(state: &PublicState) -> Response {
    match state.store.ping().await {
        Ok(()) => data_response(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Err(error) => {
            tracing::warn!(%error, "readiness: store unreachable");
            ApiError::unavailable("the store is unreachable").into_response()
        }
    }
}

fn jwks(state: &PublicState) -> Response {
    let body = state.pipeline.sessions().jwks().to_string();
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}
