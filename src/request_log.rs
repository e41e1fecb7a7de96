//! One structured log line per request, and the `X-Request-Id` that ties it to the response.
//! Handlers leave what they learned (error code, tenant, key id) in response extensions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request};
#[cfg(feature = "gateway")]
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};

use crate::error::{ErrorCode, formatted_value};
use crate::model::KeyWithTenant;
use crate::secret::random_base62;
use crate::trusted::TrustedProxies;

/// What a response's log line says beyond the response itself, in one response extension
/// (one allocation, where each its own took one more): filled by the layer and the proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogNotes {
    /// Who the request was for, once known (the layer).
    pub identity: Option<Arc<KeyWithTenant>>,
    /// What the upstream answered (the proxy).
    pub upstream: Option<LoggedUpstream>,
}

impl LogNotes {
    /// The notes in a response's `extensions`, made empty on first use.
    pub(crate) fn of(extensions: &mut http::Extensions) -> &mut Self {
        extensions.get_or_insert_default()
    }
}

/// What the upstream answered, and how long it took to send its response head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoggedUpstream {
    pub status: u16,
    pub elapsed: std::time::Duration,
}

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";
/// The name made once: inserting by `&str` parses and checks the name on every call.
pub(crate) const REQUEST_ID: http::HeaderName = http::HeaderName::from_static(REQUEST_ID_HEADER);

/// The most of a `User-Agent` a log line keeps.
const USER_AGENT_CHARS: usize = 200;

/// A request id unique across instances and restarts: a random prefix drawn once per process,
/// then a counter. Cheaper than drawing randomness per request, and ids of one process sort.
/// Written on the stack and copied once, into the header value the line also logs.
fn next_request_id() -> Option<HeaderValue> {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| random_base62(12));
    // 12 base62 characters and at most 16 hex digits.
    formatted_value::<28>(format_args!("{prefix}{:08x}", COUNTER.fetch_add(1, Ordering::Relaxed)))
}

/// Assigns a request id, runs the request, stamps the id on the response and logs the line.
/// The path is logged without its query string, which could carry anything. The client is the
/// address keygate trusts: the peer, or what a trusted proxy forwarded for.
/// Called from the middleware's closure, which holds `trusted`: decided before the future
/// is made, the address costs no clone of the list per request. (The admin listener's
/// middleware: the gateway's.)
#[cfg(feature = "gateway")]
pub(crate) fn log_request(
    listener: &'static str,
    trusted: &TrustedProxies,
    request: Request,
    next: Next,
) -> impl Future<Output = Response> + use<> {
    logged_around(listener, trusted, request, move |request| next.run(request))
}

/// [`log_request`] around any call that answers the request: the public and decision
/// listeners', which run it without a router's middleware (and the boxed future and service
/// clone those cost).
pub(crate) fn logged_around<F, R>(
    listener: &'static str,
    trusted: &TrustedProxies,
    request: Request,
    run: R,
) -> impl Future<Output = Response> + use<F, R>
where
    F: Future<Output = Response>,
    R: FnOnce(Request) -> F,
{
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let client = peer.map(|peer| trusted.client(peer, request.headers()));
    logged(listener, client, request, run)
}

async fn logged<F: Future<Output = Response>>(
    listener: &'static str,
    client: Option<IpAddr>,
    mut request: Request,
    run: impl FnOnce(Request) -> F,
) -> Response {
    let id = next_request_id();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let user_agent = request.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|agent| {
        // Client-chosen: bounded, so one line stays one line's size.
        let end = agent.char_indices().nth(USER_AGENT_CHARS).map_or(agent.len(), |(at, _)| at);
        agent[..end].to_owned()
    });
    let started = std::time::Instant::now();
    // Made once: stamped on the request (the upstream sees it) and on the response.
    if let Some(value) = &id {
        request.headers_mut().insert(REQUEST_ID, value.clone());
    }
    let mut response = run(request).await;
    if let Some(value) = &id {
        response.headers_mut().insert(REQUEST_ID, value.clone());
    }
    let request_id = id.as_ref().and_then(|value| value.to_str().ok());
    let code = response.extensions().get::<ErrorCode>().map(|c| c.as_str());
    let notes = response.extensions().get::<LogNotes>();
    let identity = notes.and_then(|notes| notes.identity.as_deref());
    let upstream = notes.and_then(|notes| notes.upstream);
    tracing::info!(
        target: crate::logging::REQUEST_LOG_TARGET,
        listener,
        request_id,
        %method,
        path,
        client = client.map(tracing::field::display),
        user_agent,
        status = response.status().as_u16(),
        code,
        tenant = identity.map(|i| i.tenant.id.as_str()),
        key_id = identity.map(|i| i.key.id.as_str()),
        upstream_status = upstream.map(|u| u.status),
        upstream_us = upstream.map(|u| u.elapsed.as_micros() as u64),
        elapsed_us = started.elapsed().as_micros() as u64,
    );
    response
}
