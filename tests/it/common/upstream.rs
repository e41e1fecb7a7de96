//! A real upstream for gateway tests: a tiny axum app on 127.0.0.1:0 that records every request
//! it receives. `/api/v1/slow…` answers after 3 s; `?status=NNN` answers status NNN.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query, as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub url: String,
    pub authority: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let upstream = Self::unstarted(format!("http://{authority}"), authority);
        let app = upstream.router();
        tokio::spawn(async move { axum::serve(listener, app).await });
        upstream
    }

    /// One that records, before anything serves it.
    pub fn unstarted(url: String, authority: String) -> Self {
        Upstream { url, authority, received: Arc::default() }
    }

    /// The app that records what it receives.
    pub fn router(&self) -> Router {
        Router::new().fallback(record).with_state(self.clone())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received().pop().expect("the upstream received a request")
    }
}

async fn record(State(upstream): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let target = parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    upstream.received.lock().unwrap().push(Received {
        method: parts.method.to_string(),
        target: target.clone(),
        headers: parts.headers,
        body: body.clone(),
    });
    if target.starts_with("/api/v1/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let headers = [
        ("x-upstream", "yes"),
        ("access-control-allow-origin", "*"),
        ("connection", "x-upstream-private"),
        ("x-upstream-private", "hop"),
    ];
    // `?status=501` (or any status) answers with that status.
    let status = target
        .split_once("status=")
        .and_then(|(_, rest)| rest.get(..3)?.parse::<u16>().ok())
        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
        .unwrap_or(axum::http::StatusCode::OK);
    (status, headers, axum::Json(serde_json::json!({ "ok": true, "bytes": body.len() }))).into_response()
}
