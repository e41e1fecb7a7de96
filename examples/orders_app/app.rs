//! An axum application guarded by keygate's tower layer: each route declares the scope (and
//! module) it needs; handlers read the authenticated [`Principal`] from request extensions.
//! Orders are kept per tenant, so one tenant never sees another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keygate::{App, Policy, Principal, StartError};
use serde_json::{Value, json};

/// Orders by tenant id.
#[derive(Clone, Default)]
pub(crate) struct Orders(Arc<Mutex<HashMap<String, Vec<Value>>>>);

impl Orders {
    #[allow(dead_code)] // used by tests/it/layer_example.rs
    pub(crate) fn count(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// The application's routes, each behind the pipeline; [`App::guard`] adds keygate's own
/// public routes (sessions, preflight, health, JWKS) for everything else, puts paths in normal
/// form before the router sees them (so `/api/v1/%6Frders` is routed, and judged, as
/// `/api/v1/orders`) and answers CORS preflights on the application's routes from the key
/// allowlists.
pub(crate) fn router(app: &App, orders: Orders) -> Result<Router, StartError> {
    let read = app.require(Policy::scope("orders:read")?.with_module("orders"));
    let write = app.require(Policy::scope("orders:write")?.with_module("orders"));
    let routes = Router::new()
        .route("/api/v1/orders", get(list_orders.layer(read.clone())).post(create_order.layer(write.clone())))
        .route("/api/v1/orders/{id}", get(get_order.layer(read)).delete(delete_order.layer(write)))
        .with_state(orders);
    app.guard(routes)
}

fn tenant(principal: &Principal) -> String {
    principal.record.tenant.id.clone()
}

async fn list_orders(State(orders): State<Orders>, Extension(principal): Extension<Principal>) -> Json<Value> {
    let all = orders.0.lock().unwrap().get(&tenant(&principal)).cloned().unwrap_or_default();
    Json(json!({ "data": all }))
}

async fn create_order(
    State(orders): State<Orders>,
    Extension(principal): Extension<Principal>,
    Json(body): Json<Value>,
) -> Response {
    let mut all = orders.0.lock().unwrap();
    let list = all.entry(tenant(&principal)).or_default();
    let order = json!({
        "id": list.len() + 1,
        "item": body.get("item").cloned().unwrap_or(Value::Null),
        "createdBy": principal.record.key.id,
        "channel": principal.channel.as_str(),
    });
    list.push(order.clone());
    (StatusCode::CREATED, Json(json!({ "data": order }))).into_response()
}

async fn get_order(
    State(orders): State<Orders>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<u64>,
) -> Response {
    let all = orders.0.lock().unwrap();
    let found = all.get(&tenant(&principal)).and_then(|list| list.iter().find(|o| o["id"] == id).cloned());
    match found {
        Some(order) => Json(json!({ "data": order })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": { "code": "NOT_FOUND", "message": "no such order", "details": [] } })),
        )
            .into_response(),
    }
}

async fn delete_order(
    State(orders): State<Orders>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<u64>,
) -> StatusCode {
    let mut all = orders.0.lock().unwrap();
    if let Some(list) = all.get_mut(&tenant(&principal)) {
        list.retain(|o| o["id"] != id);
    }
    StatusCode::NO_CONTENT
}
