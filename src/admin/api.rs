//! The admin API over HTTP (SPEC §8), served on the admin listener, behind `Authorization:
//! Bearer <admin token>` compared in constant time. The token guards every route, unknown paths
//! included; a `read` token makes only `GET` (and `HEAD`) requests (SPEC §12), and each write is
//! recorded in the audit log under the token's name. The console's files beside it are open.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};

use super::tokens::{AdminTokens, Caller};
use super::{Admin, Page, PageQuery};
use crate::config::{AdminRole, SessionAlgorithm};
use crate::error::{ApiError, ErrorCode, data_response};
use crate::request_log::log_request;
use crate::trusted::TrustedProxies;
use crate::usage::{CSV_TYPE, UsageAnswer, UsageQuery};

/// Admin bodies are small JSON documents.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// `tokens`: the admin tokens in force; `trusted`: whose `X-Forwarded-For` the request log
/// believes.
pub fn router(admin: Arc<Admin>, tokens: AdminTokens, algorithm: SessionAlgorithm, trusted: TrustedProxies) -> Router {
    Router::new()
        .route("/admin/v1/tenants", post(create_tenant).get(list_tenants))
        .route("/admin/v1/tenants/{tenant_id}", get(get_tenant).patch(update_tenant).delete(delete_tenant))
        .route("/admin/v1/tenants/{tenant_id}/keys", post(create_key).get(list_keys))
        .route("/admin/v1/keys", get(find_keys))
        .route("/admin/v1/keys/{key_id}", get(get_key).patch(update_key).delete(delete_key))
        .route("/admin/v1/keys/{key_id}/revoke", post(revoke_key))
        .route("/admin/v1/keys/{key_id}/roll", post(roll_key))
        .route("/admin/v1/keys/{key_id}/usage", get(key_usage))
        .route("/admin/v1/tenants/{tenant_id}/usage", get(tenant_usage))
        .route(
            "/admin/v1/signing-keys",
            get(list_signing_keys).post(move |state, caller| rotate_signing_key(state, caller, algorithm)),
        )
        .route(
            "/admin/v1/signing-keys/{kid}/retire",
            post(move |state, caller, kid| retire_signing_key(state, caller, kid, algorithm)),
        )
        .route("/admin/v1/audit", get(list_audit))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], crate::openapi::admin()) }),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no route for this path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this path")
        })
        .with_state(admin)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(envelope_errors))
        .layer(axum::middleware::from_fn(move |request, next| require_token(tokens.clone(), request, next)))
        // The console's files need no token: a browser opening a page sends none (SPEC §15).
        .merge(super::console::router())
        .layer(axum::middleware::from_fn(move |request, next| log_request("admin", &trusted, request, next)))
}

async fn require_token(tokens: AdminTokens, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(caller) = presented.and_then(|token| tokens.caller(token)) else {
        return ApiError::new(ErrorCode::AdminTokenInvalid, "a valid admin token is required").into_response();
    };
    let reads = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
    if caller.role == AdminRole::Read && !reads {
        return ApiError::new(ErrorCode::AdminReadOnly, "this admin token may only read: it has role read")
            .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// axum's own rejections (a path parameter that is not UTF-8, …) answer plain text; every
/// error of keygate's is the JSON envelope.
async fn envelope_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(response.status().is_client_error() || response.status().is_server_error()) || is_json {
        return response;
    }
    let code = match response.status() {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        status if status.is_client_error() => ErrorCode::ValidationError,
        _ => ErrorCode::InternalError,
    };
    ApiError::new(code, "the request could not be read").into_response()
}

type Answer = Result<Response, ApiError>;
type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// The query string's parameters, or the envelope for one that does not parse.
fn query_params(params: Params) -> Result<HashMap<String, String>, ApiError> {
    let Query(params) =
        params.map_err(|_| ApiError::new(ErrorCode::ValidationError, "the query string is malformed"))?;
    Ok(params)
}

fn page_query(params: Params) -> Result<PageQuery, ApiError> {
    let mut params = query_params(params)?;
    Ok(PageQuery {
        limit: params.remove("limit"),
        cursor: params.remove("cursor"),
        state: params.remove("state"),
        prefix: params.remove("prefix"),
        tenant_id: params.remove("tenantId"),
        target_id: params.remove("targetId"),
        action: params.remove("action"),
        since: params.remove("since"),
        until: params.remove("until"),
    })
}

type BodyBytes = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The body, or the envelope for one that is too large or could not be read.
fn checked_body(body: BodyBytes) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large"),
        _ => ApiError::new(ErrorCode::ValidationError, "the body could not be read"),
    })
}

fn json_page<T: serde::Serialize>(page: &T) -> Response {
    match serde_json::to_string(page) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => ApiError::internal().into_response(),
    }
}

async fn create_tenant(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    body: BodyBytes,
) -> Answer {
    Ok(data_response(StatusCode::CREATED, &admin.create_tenant(&caller.name, &checked_body(body)?).await?))
}

async fn list_tenants(State(admin): State<Arc<Admin>>, params: Params) -> Answer {
    Ok(json_page(&admin.tenants(&page_query(params)?).await?))
}

async fn get_tenant(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.tenant(&id).await?))
}

async fn update_tenant(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: BodyBytes,
) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.update_tenant(&caller.name, &id, &checked_body(body)?).await?))
}

async fn create_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(tenant_id): Path<String>,
    body: BodyBytes,
) -> Answer {
    let created = admin.create_key(&caller.name, &tenant_id, &checked_body(body)?).await?;
    let mut response = data_response(StatusCode::CREATED, &created);
    response.headers_mut().insert(header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn list_keys(State(admin): State<Arc<Admin>>, Path(tenant_id): Path<String>, params: Params) -> Answer {
    Ok(json_page(&admin.keys(&tenant_id, &page_query(params)?).await?))
}

async fn delete_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    admin.delete_key(&caller.name, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_tenant(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    admin.delete_tenant(&caller.name, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn find_keys(State(admin): State<Arc<Admin>>, params: Params) -> Answer {
    Ok(json_page(&admin.find_keys(&page_query(params)?).await?))
}

async fn get_key(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.key(&id).await?))
}

async fn update_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: BodyBytes,
) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.update_key(&caller.name, &id, &checked_body(body)?).await?))
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()).into_response()
}

async fn revoke_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.revoke_key(&caller.name, &id).await?))
}

async fn roll_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: BodyBytes,
) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.roll_key(&caller.name, &id, &checked_body(body)?).await?))
}

/// Shaped as every other list, on one page: there are a handful of signing keys.
async fn list_signing_keys(State(admin): State<Arc<Admin>>) -> Answer {
    Ok(json_page(&Page { data: admin.signing_keys().await?, next_cursor: None }))
}

/// A key of the configured algorithm: the one the pipeline mints with.
async fn rotate_signing_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    algorithm: SessionAlgorithm,
) -> Answer {
    Ok(data_response(StatusCode::CREATED, &admin.rotate_signing_key(&caller.name, algorithm).await?))
}

async fn retire_signing_key(
    State(admin): State<Arc<Admin>>,
    Extension(caller): Extension<Caller>,
    Path(kid): Path<String>,
    algorithm: SessionAlgorithm,
) -> Answer {
    Ok(data_response(StatusCode::OK, &admin.retire_signing_key(&caller.name, &kid, algorithm).await?))
}

async fn list_audit(State(admin): State<Arc<Admin>>, params: Params) -> Answer {
    Ok(json_page(&admin.audit(&page_query(params)?).await?))
}

fn usage_query(params: Params) -> Result<UsageQuery, ApiError> {
    let mut params = query_params(params)?;
    Ok(UsageQuery {
        from: params.remove("from"),
        to: params.remove("to"),
        granularity: params.remove("granularity"),
        group_by: params.remove("groupBy"),
    })
}

/// JSON, or CSV when the client asks for `text/csv`.
fn usage_answer(headers: &http::HeaderMap, answer: &UsageAnswer) -> Response {
    let wants_csv = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("text/csv")));
    match wants_csv {
        true => ([(header::CONTENT_TYPE, CSV_TYPE)], answer.csv()).into_response(),
        false => json_page(answer),
    }
}

async fn key_usage(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    params: Params,
) -> Answer {
    let query = usage_query(params)?;
    Ok(usage_answer(&headers, &admin.key_usage(&id, &query).await?))
}

async fn tenant_usage(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    params: Params,
) -> Answer {
    let query = usage_query(params)?;
    Ok(usage_answer(&headers, &admin.tenant_usage(&id, &query).await?))
}
